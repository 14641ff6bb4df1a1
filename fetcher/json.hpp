#pragma once

// Reading JSON documents into typed values (RapidJSON), the one way every
// parser in the fetcher does it: registry manifests and configs, AppC
// manifests, and the files of a `docker save` archive. Each caller says how
// its errors read with a Fail, which gets what is wrong ("'size' is
// missing") and makes the caller's Error from it (its kind, the document
// named).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "fetcher/types.hpp"

namespace prov::fetcher::json {

using Value = rapidjson::Value;
using Fail = std::function<Error(const std::string& why)>;

// `body` parsed into `doc`: ResourceExhausted over `limit` bytes;
// fail("not valid JSON (<why> at offset N)") when it does not parse.
Try<Nothing> parse(rapidjson::Document& doc, std::string_view body, const Fail& fail,
                   std::size_t limit = std::numeric_limits<std::size_t>::max());

// A string member; "" when absent (or null) and not required.
Try<std::string> string(const Value& object, const char* key, bool required, const Fail& fail);

// An integer member; -1 when absent and not required.
Try<std::int64_t> integer(const Value& object, const char* key, bool required, const Fail& fail);

// An array of strings; empty when absent (or null) and not required; more
// than `max` elements fail.
Try<std::vector<std::string>> strings(const Value& object, const char* key, bool required, const Fail& fail,
                                      std::size_t max = std::numeric_limits<std::size_t>::max());

// A key that appears twice in one object ("" when none): in `value` itself,
// or with `deep` in every object below it too. Readers disagree on which of
// two equal keys wins, so documents that have them are refused.
std::string repeatedKey(const Value& value, bool deep);

// Whether a key in `value` or below holds a NUL character ("a\u0000b"):
// readers that stop at it and readers that do not see different keys.
bool nulInKey(const Value& value);

}  // namespace prov::fetcher::json
