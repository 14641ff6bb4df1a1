# prov_component(<target> <name> [HEADERS <file>...] [GENERATED_HEADERS <file>...])
#
# Makes the static library <target> the component provisioner::<name>: its
# export name, an ALIAS of the same name in the build tree (so a parent
# project that add_subdirectory()s this one and a consumer of the installed
# package write the same target names), its include directories, and its
# public headers as file sets, which install(TARGETS) copies keeping the
# source layout (include/actors/future.hpp, included as "actors/future.hpp").
#
# HEADERS: relative to the calling folder, below PROJECT_SOURCE_DIR.
# GENERATED_HEADERS: absolute paths below PROJECT_BINARY_DIR (protoc's
# messages/*.pb.h, configure_file's provisioner/version.hpp). They are two
# file sets because a file set's base directories may not nest, and the
# build directory is often inside the source tree.
function(prov_component target name)
  cmake_parse_arguments(PARSE_ARGV 2 ARG "" "" "HEADERS;GENERATED_HEADERS")
  add_library(provisioner::${name} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${name})
  target_include_directories(${target} PUBLIC $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  if(ARG_HEADERS)
    target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>)
    target_sources(${target} PUBLIC FILE_SET HEADERS BASE_DIRS ${PROJECT_SOURCE_DIR} FILES ${ARG_HEADERS})
  endif()
  if(ARG_GENERATED_HEADERS)
    target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}>)
    target_sources(${target} PUBLIC FILE_SET generated TYPE HEADERS BASE_DIRS ${PROJECT_BINARY_DIR}
                   FILES ${ARG_GENERATED_HEADERS})
  endif()
endfunction()
