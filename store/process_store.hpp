#pragma once

// The facade both image stores use (as backend::ProcessBackend is the
// backends'): owns a store process P (actors::ProcessOwner, which drains
// P::quiesce() before it stops P) and turns each Store call into one
// dispatch. P provides recover(), get(image), prune(excluded, activePaths),
// images() and the rest of Store's calls with their signatures.
//
// P is incomplete where a facade is declared, so the calls are defined in
// store/process_store_impl.hpp, which only the facade's .cpp includes, and
// instantiated there (`template class ProcessStore<P>;`); the facade's
// header declares that instantiation `extern`.

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "actors/process_owner.hpp"
#include "store/store.hpp"

namespace prov::store {

template <typename P>
class ProcessStore : public Store {
 public:
  Future<Nothing> recover() override;
  Future<ImageInfo> get(const messages::Image& image) override;
  Future<Nothing> prune(const std::vector<messages::Image>& excluded,
                        const std::set<std::string>& activePaths) override;
  Future<std::vector<messages::StoredImage>> images() override;
  Future<StoreUsage> usage() override;
  Future<Nothing> remove(const std::vector<std::string>& keys, const std::set<std::string>& activePaths) override;
  Future<Nothing> touch(const std::vector<std::string>& keys) override;
  Future<Nothing> swept() override;
  Future<Nothing> quiesce() override;
  Future<StoreCheck> verify(const std::vector<std::string>& keys) override;
  Future<Nothing> discard(const std::vector<std::string>& contentDirs) override;
  Future<Nothing> retire(const std::vector<std::string>& contentDirs) override;
  Future<std::string> lookUp(const messages::Image& image) override;

 protected:
  ProcessStore(actors::Runtime& runtime, std::unique_ptr<P> process) : process_(runtime, std::move(process)) {}
  actors::ProcessOwner<P> process_;
};

}  // namespace prov::store
