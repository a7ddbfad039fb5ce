# Checks that every file under src/<layer>/ includes only headers of its own
# layer and the layers below it (a text scan of `#include "<layer>/..."`).
# The build enforces the same order for what each layer's sources compile;
# this also covers headers that no source of their own layer includes.
#
#   cmake -DSRC_DIR=<repo>/src -DLAYERS=core,io,... -P check_layer_includes.cmake
# (LAYERS lowest first).
cmake_minimum_required(VERSION 3.25)
if(NOT SRC_DIR OR NOT LAYERS)
  message(FATAL_ERROR "usage: cmake -DSRC_DIR=... -DLAYERS=a,b,c -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
string(REPLACE "," ";" LAYERS "${LAYERS}")

set(violations "")
set(checked 0)
foreach(layer IN LISTS LAYERS)
  list(FIND LAYERS ${layer} own)
  file(GLOB_RECURSE files ${SRC_DIR}/${layer}/*.h ${SRC_DIR}/${layer}/*.cpp)
  foreach(file IN LISTS files)
    math(EXPR checked "${checked} + 1")
    file(STRINGS ${file} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"[a-z_]+/")
    foreach(line IN LISTS lines)
      string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([a-z_]+)/.*" "\\1" target "${line}")
      list(FIND LAYERS ${target} index)
      if(index GREATER own)
        file(RELATIVE_PATH rel ${SRC_DIR} ${file})
        string(STRIP "${line}" line)
        list(APPEND violations "src/${rel}: ${line} (${target} is above ${layer})")
      endif()
    endforeach()
  endforeach()
endforeach()

if(violations)
  list(JOIN violations "\n  " text)
  message(FATAL_ERROR "wrong-way includes:\n  ${text}")
endif()
message(STATUS "${checked} files under src/ include only their own layer and the layers below")
