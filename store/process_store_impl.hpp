#pragma once

// ProcessStore<P>'s calls (store/process_store.hpp): include where P is
// complete, then instantiate there: `template class ProcessStore<P>;`.

#include "store/process_store.hpp"

namespace prov::store {

template <typename P>
Future<Nothing> ProcessStore<P>::recover() {
  return process_.dispatch(&P::recover);
}

template <typename P>
Future<ImageInfo> ProcessStore<P>::get(const messages::Image& image) {
  return process_.dispatch(&P::get, image);
}

template <typename P>
Future<Nothing> ProcessStore<P>::prune(const std::vector<messages::Image>& excluded,
                                       const std::set<std::string>& activePaths) {
  return process_.dispatch(&P::prune, excluded, activePaths);
}

template <typename P>
Future<std::vector<messages::StoredImage>> ProcessStore<P>::images() {
  return process_.dispatch(&P::images);
}

template <typename P>
Future<StoreUsage> ProcessStore<P>::usage() {
  return process_.dispatch(&P::usage);
}

template <typename P>
Future<Nothing> ProcessStore<P>::remove(const std::vector<std::string>& keys,
                                        const std::set<std::string>& activePaths) {
  return process_.dispatch(&P::remove, keys, activePaths);
}

template <typename P>
Future<Nothing> ProcessStore<P>::touch(const std::vector<std::string>& keys) {
  return process_.dispatch(&P::touch, keys);
}

template <typename P>
Future<Nothing> ProcessStore<P>::swept() {
  return process_.dispatch(&P::swept);
}

template <typename P>
Future<Nothing> ProcessStore<P>::quiesce() {
  return process_.dispatch(&P::quiesce);
}

template <typename P>
Future<StoreCheck> ProcessStore<P>::verify(const std::vector<std::string>& keys) {
  return process_.dispatch(&P::verify, keys);
}

template <typename P>
Future<Nothing> ProcessStore<P>::discard(const std::vector<std::string>& contentDirs) {
  return process_.dispatch(&P::discard, contentDirs);
}

template <typename P>
Future<Nothing> ProcessStore<P>::retire(const std::vector<std::string>& contentDirs) {
  return process_.dispatch(&P::retire, contentDirs);
}

template <typename P>
Future<std::string> ProcessStore<P>::lookUp(const messages::Image& image) {
  return process_.dispatch(&P::lookUp, image);
}

}  // namespace prov::store
