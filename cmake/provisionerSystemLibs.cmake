# zstd, ISA-L (libisal), libarchive, GPGME and yaml-cpp as IMPORTED targets
# prov::zstd, prov::isal, prov::archive, prov::gpgme and prov::yamlcpp, found
# by name with find_library (ISA-L ships no CMake package). GPGME (with
# libassuan and libgpg-error) and yaml-cpp are linked statically, as
# libarchive is: a command then loads no more shared libraries than before
# it checked signatures.
#
# store/CMakeLists.txt links them PRIVATE into prov_store. prov_store is a
# static library, so whoever links it needs them too: its exported link
# interface names these targets ($<LINK_ONLY:prov::zstd>), and the installed
# provisionerConfig.cmake includes this same file, so the libraries are found
# again on the consumer's machine instead of at paths recorded at build time.
#
# Sets PROV_SYSTEM_LIBS_MISSING to what was not found (empty: everything was).
# ZSTD_LIBRARY, ISAL_LIBRARY, ISAL_INCLUDE_DIR and the ARCHIVE_* ones are
# cache variables: set them to use other copies (a static libisal.a, say).

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

# prov::archive. With PROV_STATIC_ARCHIVE (ON unless set otherwise): Debian's
# libarchive.a with the compressors of what is read and written here (zlib,
# bzip2, xz, zstd). The shared libarchive.so.13 brings libxml2 and ICU with
# it (for xar, never used here), whose loading and relocation cost every
# command about 9 ms of its start on this project's machines
# (bench/cli_bench.cpp); the static archive brings only the tar reader and
# writer and the filters. The price: a libarchive security update needs the
# command rebuilt, as the peers' Go binaries, which carry their own tar
# code, do. OFF: the shared library (find_package(LibArchive)).
if(NOT DEFINED PROV_STATIC_ARCHIVE)
  set(PROV_STATIC_ARCHIVE ON)
endif()
if(NOT TARGET prov::archive)
  if(PROV_STATIC_ARCHIVE)
    find_library(ARCHIVE_STATIC_LIBRARY libarchive.a)
    find_path(ARCHIVE_INCLUDE_DIR archive.h)
    find_library(ARCHIVE_Z_LIBRARY z)
    find_library(ARCHIVE_BZ2_LIBRARY bz2)
    find_library(ARCHIVE_LZMA_LIBRARY lzma)
    if(ARCHIVE_STATIC_LIBRARY AND ARCHIVE_INCLUDE_DIR AND ARCHIVE_Z_LIBRARY AND ARCHIVE_BZ2_LIBRARY
       AND ARCHIVE_LZMA_LIBRARY AND TARGET prov::zstd)
      add_library(prov::archive STATIC IMPORTED)
      set_target_properties(prov::archive PROPERTIES
        IMPORTED_LOCATION "${ARCHIVE_STATIC_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${ARCHIVE_INCLUDE_DIR}"
        INTERFACE_LINK_LIBRARIES "${ARCHIVE_Z_LIBRARY};${ARCHIVE_BZ2_LIBRARY};${ARCHIVE_LZMA_LIBRARY};prov::zstd")
    else()
      list(APPEND PROV_SYSTEM_LIBS_MISSING
           "static libarchive (libarchive.a, archive.h, libz, libbz2, liblzma; Debian: libarchive-dev, zlib1g-dev, "
           "libbz2-dev, liblzma-dev; or PROV_STATIC_ARCHIVE=OFF)")
    endif()
  else()
    find_package(LibArchive QUIET)
    if(LibArchive_FOUND)
      add_library(prov::archive INTERFACE IMPORTED)
      set_target_properties(prov::archive PROPERTIES INTERFACE_LINK_LIBRARIES LibArchive::LibArchive)
    else()
      list(APPEND PROV_SYSTEM_LIBS_MISSING "libarchive (Debian: libarchive-dev)")
    endif()
  endif()
endif()

if(NOT TARGET prov::gpgme)
  find_library(GPGME_STATIC_LIBRARY libgpgme.a)
  find_library(ASSUAN_STATIC_LIBRARY libassuan.a)
  find_library(GPG_ERROR_STATIC_LIBRARY libgpg-error.a)
  find_path(GPGME_INCLUDE_DIR gpgme.h)
  if(GPGME_STATIC_LIBRARY AND ASSUAN_STATIC_LIBRARY AND GPG_ERROR_STATIC_LIBRARY AND GPGME_INCLUDE_DIR)
    add_library(prov::gpgme STATIC IMPORTED)
    set_target_properties(prov::gpgme PROPERTIES
      IMPORTED_LOCATION "${GPGME_STATIC_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${GPGME_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${ASSUAN_STATIC_LIBRARY};${GPG_ERROR_STATIC_LIBRARY}")
  else()
    list(APPEND PROV_SYSTEM_LIBS_MISSING "static GPGME (libgpgme.a, libassuan.a, libgpg-error.a; Debian: libgpgme-dev)")
  endif()
endif()

if(NOT TARGET prov::yamlcpp)
  find_library(YAMLCPP_STATIC_LIBRARY libyaml-cpp.a)
  find_path(YAMLCPP_INCLUDE_DIR yaml-cpp/yaml.h)
  if(YAMLCPP_STATIC_LIBRARY AND YAMLCPP_INCLUDE_DIR)
    add_library(prov::yamlcpp STATIC IMPORTED)
    set_target_properties(prov::yamlcpp PROPERTIES
      IMPORTED_LOCATION "${YAMLCPP_STATIC_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${YAMLCPP_INCLUDE_DIR}")
  else()
    list(APPEND PROV_SYSTEM_LIBS_MISSING "static yaml-cpp (libyaml-cpp.a; Debian: libyaml-cpp-dev)")
  endif()
endif()
