#pragma once

// One layer's extraction, fed by its download while it runs:
//
//   blob bytes --write()--> LayerStream --(blocking pool)--> decompress
//     --> sha256 (diffID) --> applyTar into `root`
//
// LayerStream is the ByteSink a Puller streams the blob into. A write()
// completes when the extraction job has used the chunk (the caller's buffer
// is not copied), so the download runs at most one chunk ahead of the
// extraction and memory stays bounded by the puller's buffers. The job holds
// a blocking-pool thread for the whole layer and waits for bytes there: run
// fewer jobs at once than the pool has threads.
//
// The producer ends the input with end() (the blob was complete and its
// digest verified) or abort(error). result() is READY with the diffID once
// the tar was applied and, when `expectedDiffId` is set, its sha256 matched
// (DigestMismatch otherwise). Once the job fails, writes fail with its error,
// which stops the download. On failure `root` holds garbage: the caller
// removes it.

#include <memory>
#include <string>

#include "actors/future.hpp"
#include "fetcher/byte_sink.hpp"
#include "fetcher/manifest.hpp"
#include "store/decompress.hpp"
#include "store/tar_apply.hpp"

namespace prov::actors {
class Runtime;
}

namespace prov::store {

struct ExtractedLayer {
  std::string diffId;  // "sha256:<hex>" of the uncompressed tar, or expectedDiffId when not hashed
  ApplyResult applied;
};

struct LayerStreamOptions {
  Compression compression = Compression::Gzip;
  std::string expectedDiffId;  // empty: not checked
  // False when the puller's verified blob digest already is the diffID (an
  // uncompressed layer): the same bytes are not hashed twice.
  bool hashDiffId = true;
  ApplyOptions apply;
  // The image's unpacked bytes, shared with its other layers (may be null);
  // a failed layer gives back what it took.
  std::shared_ptr<ByteBudget> budget;
};

// A layer whose uncompressed tar (`diffId`) is not what the image's config
// says (`expected`); `what` names the layer.
Error diffIdMismatch(const std::string& what, const std::string& diffId, const std::string& expected);

class LayerStream final : public fetcher::ByteSink, public std::enable_shared_from_this<LayerStream> {
 public:
  // Starts the job; it extracts into `root` (an empty directory; made, with
  // its parents, when missing).
  static std::shared_ptr<LayerStream> start(actors::Runtime& runtime, std::string root, LayerStreamOptions options);
  ~LayerStream() override;

  actors::Future<Nothing> write(std::string_view chunk) override;
  void end();
  void abort(const Error& error);

  actors::Future<ExtractedLayer> result() const;

  struct State;

 private:
  explicit LayerStream(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

}  // namespace prov::store
