# cmake -DNM=... -DOBJECTS=... -P check_avx2_object.cmake
#
# The object built with -mavx2 (store/content_hash_avx2.cpp) must define one
# global symbol, xxh3UpdateAvx2, and nothing weak or unique: an inline
# function or template instance emitted there with external linkage could be
# the copy the linker keeps for every caller, AVX2 code run on any CPU.
# Mangled names (GNU nm and llvm-nm agree on those). The toolchain's own are
# left out: names starting with "__" (a sanitizer's or coverage's), and
# DW.ref.* (with -fPIC, the pointer to the exception personality routine
# that unwind tables refer to: data, the same in every object).
execute_process(COMMAND ${NM} --defined-only ${OBJECTS} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed on ${OBJECTS}: ${rc}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(globals "")
foreach(line IN LISTS lines)
  # Upper case: global (T, D, B, R, W, V, ...); u: unique global; i: ifunc.
  if(line MATCHES "^[0-9a-f]* ([A-Zui]) (.*)$")
    set(type "${CMAKE_MATCH_1}")
    set(name "${CMAKE_MATCH_2}")
    if(NOT name MATCHES "^(__|DW\\.ref\\.)")
      list(APPEND globals "${type} ${name}")
    endif()
  endif()
endforeach()
# prov::store::detail::xxh3UpdateAvx2(void*, void const*, unsigned long)
set(expected "T _ZN4prov5store6detail14xxh3UpdateAvx2EPvPKvm")
if(NOT globals STREQUAL expected)
  message(FATAL_ERROR "${OBJECTS} should define only '${expected}', but defines:\n${out}")
endif()
message(STATUS "${OBJECTS}: ${globals}")
