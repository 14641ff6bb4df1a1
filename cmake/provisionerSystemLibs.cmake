# zstd and ISA-L (libisal) as IMPORTED targets prov::zstd and prov::isal,
# found by name with find_library (ISA-L ships no CMake package).
#
# store/CMakeLists.txt links them PRIVATE into prov_store. prov_store is a
# static library, so whoever links it needs them too: its exported link
# interface names these targets ($<LINK_ONLY:prov::zstd>), and the installed
# provisionerConfig.cmake includes this same file, so the libraries are found
# again on the consumer's machine instead of at paths recorded at build time.
#
# Sets PROV_SYSTEM_LIBS_MISSING to what was not found (empty: everything was).
# ZSTD_LIBRARY, ISAL_LIBRARY and ISAL_INCLUDE_DIR are cache variables: set
# them to use other copies (a static libisal.a, say).

set(PROV_SYSTEM_LIBS_MISSING "")

if(NOT TARGET prov::zstd)
  find_library(ZSTD_LIBRARY zstd)
  if(ZSTD_LIBRARY)
    add_library(prov::zstd UNKNOWN IMPORTED)
    set_target_properties(prov::zstd PROPERTIES IMPORTED_LOCATION "${ZSTD_LIBRARY}")
  else()
    list(APPEND PROV_SYSTEM_LIBS_MISSING "zstd (ZSTD_LIBRARY; Debian: libzstd-dev)")
  endif()
endif()

if(NOT TARGET prov::isal)
  find_library(ISAL_LIBRARY isal)
  # The headers only matter to prov_store's own sources; a consumer links.
  find_path(ISAL_INCLUDE_DIR isa-l/igzip_lib.h)
  if(ISAL_LIBRARY)
    add_library(prov::isal UNKNOWN IMPORTED)
    set_target_properties(prov::isal PROPERTIES IMPORTED_LOCATION "${ISAL_LIBRARY}")
    if(ISAL_INCLUDE_DIR)
      set_target_properties(prov::isal PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${ISAL_INCLUDE_DIR}")
    endif()
  else()
    list(APPEND PROV_SYSTEM_LIBS_MISSING "ISA-L (ISAL_LIBRARY; Debian: libisal-dev)")
  endif()
endif()
