// XXH3-64's update compiled for AVX2, for ContentHash (layer_record.cpp) to
// call where the CPU has it. The build targets any x86-64, so the inline
// XXH3 elsewhere is SSE2's; AVX2's loop is about twice as fast (issue #18:
// the record's hash was 0.2 s of a 1 GiB layer's extraction thread).
//
// This file alone is compiled with -mavx2 (store/CMakeLists.txt). An
// inline function it emitted with external linkage (a template, or an
// inline function of a C++ header) could be the copy the linker keeps for
// every caller, which would then run AVX2 code on a CPU without it. So it
// includes only xxhash.h, whose functions are static here (XXH_INLINE_ALL),
// and its own header; tests/store/CMakeLists.txt checks that the object
// defines xxh3UpdateAvx2 and no other global or weak symbol.

#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

#include "store/content_hash_avx2.hpp"

namespace prov::store::detail {

static_assert(sizeof(XXH3_state_t) == kXxh3StateBytes);

void xxh3UpdateAvx2(void* state, const void* data, std::size_t size) {
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state), data, size);
}

}  // namespace prov::store::detail
