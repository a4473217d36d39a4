# The layers, checked on the sources: core/ <- wire/ <- server/, client/.
# Every target sees the whole tree (includes are relative to the project
# root), so the build cannot stop a wrong #include; this does. Run at
# configure time (include()) and as the test Layers.IncludesFollowTheLayers
# (cmake -DATTN_SOURCE_DIR=... -P).
#   dir      may not include
set(ATTN_LAYER_RULES
  "core"   "wire/|server/|client/|attention/v1/|oneapi/dnnl/|dnnl"
  "wire"   "server/|client/"
  "flags"  "wire/|server/|client/|attention/v1/|dnnl"
  "client" "server/"
  "server" "client/")

if(NOT ATTN_SOURCE_DIR)
  set(ATTN_SOURCE_DIR ${CMAKE_CURRENT_LIST_DIR}/..)
endif()

set(violations "")
list(LENGTH ATTN_LAYER_RULES n)
math(EXPR last "${n} - 1")
foreach(i RANGE 0 ${last} 2)
  math(EXPR j "${i} + 1")
  list(GET ATTN_LAYER_RULES ${i} dir)
  list(GET ATTN_LAYER_RULES ${j} forbidden)
  file(GLOB_RECURSE sources ${ATTN_SOURCE_DIR}/${dir}/*.h ${ATTN_SOURCE_DIR}/${dir}/*.cc)
  foreach(source ${sources})
    file(STRINGS ${source} lines REGEX "^#include [\"<](${forbidden})")
    # core/'s private oneDNN use lives in its .cc files; only headers are checked for it.
    if(dir STREQUAL "core" AND source MATCHES "\\.cc$")
      list(FILTER lines EXCLUDE REGEX "dnnl")
    endif()
    foreach(line ${lines})
      file(RELATIVE_PATH rel ${ATTN_SOURCE_DIR} ${source})
      string(APPEND violations "  ${rel}: ${line}\n")
    endforeach()
  endforeach()
endforeach()

if(violations)
  message(FATAL_ERROR "Includes across layers (core/ <- wire/ <- server/, client/):\n${violations}")
endif()
