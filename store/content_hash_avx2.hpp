#pragma once

// Internal to layer_record.cpp: XXH3-64's update built for AVX2
// (content_hash_avx2.cpp). Call it only where the CPU has AVX2.

#include <cstddef>

namespace prov::store::detail {

// sizeof(XXH3_state_t), checked on both sides.
inline constexpr std::size_t kXxh3StateBytes = 576;

// XXH3_64bits_update on `state`, an XXH3_state_t.
void xxh3UpdateAvx2(void* state, const void* data, std::size_t size);

}  // namespace prov::store::detail
