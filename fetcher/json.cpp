#include "fetcher/json.hpp"

#include <set>

#include <rapidjson/error/en.h>

namespace prov::fetcher::json {

namespace {

std::string quoted(const char* key) { return "'" + std::string(key) + "'"; }

}  // namespace

Try<Nothing> parse(rapidjson::Document& doc, std::string_view body, const Fail& fail, std::size_t limit) {
  if (body.size() > limit) {
    Error error = fail(std::to_string(body.size()) + " bytes is over the limit of " + std::to_string(limit));
    error.kind = ErrorKind::ResourceExhausted;
    return error;
  }
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError()) {
    return fail(std::string("not valid JSON (") + rapidjson::GetParseError_En(doc.GetParseError()) + " at offset " +
                std::to_string(doc.GetErrorOffset()) + ")");
  }
  return Nothing{};
}

Try<std::string> string(const Value& object, const char* key, bool required, const Fail& fail) {
  auto it = object.FindMember(key);
  if (it == object.MemberEnd() || it->value.IsNull()) {
    if (required) return fail(quoted(key) + " is missing");
    return std::string();
  }
  if (!it->value.IsString()) return fail(quoted(key) + " is not a string");
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

Try<std::int64_t> integer(const Value& object, const char* key, bool required, const Fail& fail) {
  auto it = object.FindMember(key);
  if (it == object.MemberEnd()) {
    if (required) return fail(quoted(key) + " is missing");
    return std::int64_t{-1};
  }
  if (!it->value.IsInt64()) return fail(quoted(key) + " is not an integer");
  return it->value.GetInt64();
}

Try<std::vector<std::string>> strings(const Value& object, const char* key, bool required, const Fail& fail,
                                      std::size_t max) {
  std::vector<std::string> out;
  auto it = object.FindMember(key);
  if (it == object.MemberEnd() || it->value.IsNull()) {
    if (required) return fail(quoted(key) + " is missing");
    return out;
  }
  if (!it->value.IsArray()) return fail(quoted(key) + " is not an array");
  if (it->value.Size() > max) return fail(quoted(key) + " has too many entries");
  for (const auto& v : it->value.GetArray()) {
    if (!v.IsString()) return fail(quoted(key) + " has a non-string element");
    out.emplace_back(v.GetString(), v.GetStringLength());
  }
  return out;
}

std::string repeatedKey(const Value& value, bool deep) {
  if (value.IsArray()) {
    if (!deep) return "";
    for (const auto& item : value.GetArray()) {
      if (auto found = repeatedKey(item, deep); !found.empty()) return found;
    }
  } else if (value.IsObject()) {
    std::set<std::string_view> seen;
    for (const auto& member : value.GetObject()) {
      if (!seen.emplace(member.name.GetString(), member.name.GetStringLength()).second) {
        return std::string(member.name.GetString(), member.name.GetStringLength());
      }
    }
    if (!deep) return "";
    for (const auto& member : value.GetObject()) {
      if (auto found = repeatedKey(member.value, deep); !found.empty()) return found;
    }
  }
  return "";
}

bool nulInKey(const Value& value) {
  if (value.IsArray()) {
    for (const auto& item : value.GetArray()) {
      if (nulInKey(item)) return true;
    }
  } else if (value.IsObject()) {
    for (const auto& member : value.GetObject()) {
      if (std::string_view(member.name.GetString(), member.name.GetStringLength()).find('\0') !=
              std::string_view::npos ||
          nulInKey(member.value)) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace prov::fetcher::json
