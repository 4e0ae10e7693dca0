# Decides whether the ONNX exporter's library is built: AUTO turns it on when protobuf (library and
# headers), protoc and an onnx.proto are found. onnx.proto is taken from TRICKS_ONNX_PROTO, else
# from the onnx Python package (Debian: python3-onnx ships it in its package directory), asked of
# /usr/bin/python3 or the python3 on PATH. Nothing else in tricks needs protobuf: without it,
# tricks::onnx, examples/export and the ONNX tests are simply not built.
set(TRICKS_ONNX_ENABLED OFF)
set(_tricks_onnx_why "switched off")
set(TRICKS_ONNX_PROTO "" CACHE FILEPATH "onnx.proto for the ONNX exporter (empty: the one of Python's onnx package)")
if(NOT TRICKS_ONNX STREQUAL "OFF")
  find_package(Protobuf QUIET)
  if(NOT TRICKS_ONNX_PROTO)
    find_program(TRICKS_ONNX_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
    find_program(TRICKS_ONNX_PYTHON NAMES python3)
    if(TRICKS_ONNX_PYTHON)
      # find_spec: the package's directory without importing it (and numpy with it)
      execute_process(COMMAND ${TRICKS_ONNX_PYTHON} -c
                        "import importlib.util as u; s = u.find_spec('onnx'); print(s.submodule_search_locations[0] if s else '')"
                      OUTPUT_VARIABLE _tricks_onnx_dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
      if(_rc EQUAL 0 AND _tricks_onnx_dir AND EXISTS "${_tricks_onnx_dir}/onnx.proto")
        set(_tricks_onnx_proto "${_tricks_onnx_dir}/onnx.proto")
      endif()
    endif()
  else()
    set(_tricks_onnx_proto "${TRICKS_ONNX_PROTO}")
  endif()
  if(NOT Protobuf_FOUND OR NOT TARGET protobuf::libprotobuf)
    set(_tricks_onnx_why "protobuf not found (Debian: libprotobuf-dev)")
  elseif(NOT Protobuf_PROTOC_EXECUTABLE)
    set(_tricks_onnx_why "protoc not found (Debian: protobuf-compiler)")
  elseif(NOT _tricks_onnx_proto OR NOT EXISTS "${_tricks_onnx_proto}")
    set(_tricks_onnx_why "no onnx.proto (Debian: python3-onnx, or set TRICKS_ONNX_PROTO)")
  else()
    set(TRICKS_ONNX_ENABLED ON)
    set(_tricks_onnx_why "protobuf ${Protobuf_VERSION}, ${_tricks_onnx_proto}")
  endif()
  if(TRICKS_ONNX STREQUAL "ON" AND NOT TRICKS_ONNX_ENABLED)
    message(FATAL_ERROR "tricks: TRICKS_ONNX=ON but ${_tricks_onnx_why}; install them or set TRICKS_ONNX=OFF")
  endif()
endif()
message(STATUS "tricks: ONNX export ${TRICKS_ONNX_ENABLED} (TRICKS_ONNX=${TRICKS_ONNX}: ${_tricks_onnx_why})")

# ---- tricks::onnx: onnx.proto's generated classes and write_onnx() ------------------------------
# A static library; a program that calls tricks::io::export_onnx links it. Not installed (a consumer
# of an installed tricks builds it from its own checkout with add_subdirectory).
if(TRICKS_ONNX_ENABLED AND NOT TARGET tricks_onnx)
  set(_gen ${PROJECT_BINARY_DIR}/tricks_onnx_gen)
  configure_file(${_tricks_onnx_proto} ${_gen}/onnx/onnx.proto COPYONLY)
  add_custom_command(OUTPUT ${_gen}/onnx/onnx.pb.h ${_gen}/onnx/onnx.pb.cc
    COMMAND ${Protobuf_PROTOC_EXECUTABLE} --proto_path=${_gen} --cpp_out=${_gen} ${_gen}/onnx/onnx.proto
    DEPENDS ${_gen}/onnx/onnx.proto
    COMMENT "protoc: onnx.proto -> onnx.pb.cc" VERBATIM)
  add_library(tricks_onnx STATIC ${PROJECT_SOURCE_DIR}/src/onnx_writer.cpp ${_gen}/onnx/onnx.pb.cc)
  add_library(tricks::onnx ALIAS tricks_onnx)
  # generated headers as system headers: protoc's code is not ours to warn about
  target_include_directories(tricks_onnx SYSTEM PUBLIC $<BUILD_INTERFACE:${_gen}>)
  target_link_libraries(tricks_onnx PUBLIC tricks::tricks protobuf::libprotobuf)
  target_compile_definitions(tricks_onnx PRIVATE TRICKS_VERSION="${PROJECT_VERSION}")
  set_target_properties(tricks_onnx PROPERTIES POSITION_INDEPENDENT_CODE ON)
endif()
