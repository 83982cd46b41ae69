// The dummy store: Django's DummyCache, which keeps nothing. Every write succeeds and
// every read misses, so the binding gives Django's exact answers (add is True, delete,
// touch and has_key are False, incr raises for the missing key), keys still checked.
#pragma once

#include "core/store.hpp"

namespace nativecache {

class DummyStore final : public Store {
 public:
  Status get(std::string_view, ValueOut&) override { return Status::Of(Code::kNotFound); }
  Status contains(std::string_view) override { return Status::Of(Code::kNotFound); }
  Status store(const Write&, Mode mode, std::uint64_t, const Limits&) override {
    // Replace and cas need an entry, which never exists.
    return mode == Mode::kReplace || mode == Mode::kCas ? Status::Of(Code::kNotFound)
                                                        : Status::Ok();
  }
  Status concat(std::string_view, std::span<const std::byte>, std::uint32_t, bool) override {
    return Status::Of(Code::kNotFound);
  }
  Status remove(std::string_view) override { return Status::Of(Code::kNotFound); }
  Status touch(std::string_view, Ttl) override { return Status::Of(Code::kNotFound); }
  Status incr(std::string_view, std::int64_t, std::int64_t&) override {
    return Status::Of(Code::kNotFound);
  }
  Status ttl(std::string_view, std::int64_t&) override { return Status::Of(Code::kNotFound); }
  Status clear() override { return Status::Ok(); }
  StoreStats stats() override { return {}; }
  [[nodiscard]] std::size_t max_value_size() const noexcept override { return SIZE_MAX; }
  Status get_many(std::span<const std::string_view>, ManyOut&) override { return Status::Ok(); }
};

}  // namespace nativecache
