# cmake -DNM=... -DOBJECTS=... -P check_avx2_object.cmake
#
# The object built with -mavx2 (store/content_hash_avx2.cpp) must define one
# global symbol, xxh3UpdateAvx2, and nothing weak or unique: an inline
# function or template instance emitted there with external linkage could be
# the copy the linker keeps for every caller, AVX2 code run on any CPU.
execute_process(COMMAND ${NM} -C --defined-only ${OBJECTS} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed on ${OBJECTS}: ${rc}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(globals "")
foreach(line IN LISTS lines)
  # Upper case: global (T, D, B, R, W, V, ...); u: unique global.
  if(line MATCHES "^[0-9a-f]* ([A-Zu]) (.*)$")
    list(APPEND globals "${CMAKE_MATCH_1} ${CMAKE_MATCH_2}")
  endif()
endforeach()
set(expected "T prov::store::detail::xxh3UpdateAvx2(void*, void const*, unsigned long)")
if(NOT globals STREQUAL expected)
  message(FATAL_ERROR "${OBJECTS} should define only '${expected}', but defines:\n${out}")
endif()
message(STATUS "${OBJECTS}: ${globals}")
