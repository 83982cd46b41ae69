// Defaults of the Store interface: the batch get, and the key listing of stores that have none.
#include "core/store.hpp"

namespace nativecache {

Status Store::get_many(std::span<const std::string_view> keys, ManyOut& out) {
  // The stores that use this default copy a value under their lock and report how much
  // room it needs instead of allocating there, so a get is asked again with more room.
  thread_local std::vector<std::byte> scratch(16 * 1024);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    ValueOut v;
    Status s;
    do {
      v = ValueOut{scratch.data(), scratch.size()};
      v.grow = &scratch;
      s = get(keys[i], v);
      if (s.code == Code::kBufferTooSmall) scratch.resize(static_cast<std::size_t>(s.needed));
    } while (s.code == Code::kBufferTooSmall);
    if (s.code == Code::kNotFound) continue;
    if (!s.ok()) return s;
    std::size_t offset = out.bytes.size();
    out.bytes.insert(out.bytes.end(), v.data, v.data + v.size);
    out.items.push_back({i, v.flags, offset, v.size});
  }
  return Status::Ok();
}

Status Store::keys(std::vector<std::string>&) {
  return Status::Of(Code::kUnsupported, kNoKeyListing);
}

}  // namespace nativecache
