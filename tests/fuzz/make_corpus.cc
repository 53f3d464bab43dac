// Writes the seed corpus (valid and damaged superblocks and slots) into the
// directory given. Run once; the corpus is committed in tests/fuzz/corpus.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "fs/format.h"

using namespace pcimirror;

static void put(const std::string& dir, const std::string& name, uint8_t mode,
                std::vector<uint8_t> bytes) {
  bytes.insert(bytes.begin(), mode);
  std::ofstream(dir + "/" + name, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  Superblock sb = *plan_layout(64ull << 20, 512, 64 * 1024);
  for (int i = 0; i < 16; ++i) sb.uuid[i] = static_cast<uint8_t>(0xa0 + i);
  sb.region_bytes = 16 << 20;
  sb.memory_spec = "memfd=fuzz,size=16M";
  auto s = encode_superblock(sb);
  put(dir, "sb-valid", 0, s);
  auto d = s; d[100] ^= 1; put(dir, "sb-bitflip", 0, d);
  put(dir, "sb-truncated", 0, std::vector<uint8_t>(s.begin(), s.begin() + 1000));
  Superblock odd = sb; odd.pci_vendor_id = 0x1af4; odd.pci_device_id = 0x1110;
  odd.pci_bar_bytes = 64 << 20; odd.mirror_copies = 1; odd.label = "lab";
  put(dir, "sb-pci", 0, encode_superblock(odd));

  SliceTable t;
  t.generation = 5;
  const uint64_t d0 = sb.data_start_sector;
  SliceEntry a; a.name = "frames"; a.length_bytes = (1 << 20) + 17; a.copies.resize(2);
  a.copies[0].extents = {{d0, 2056}};
  a.copies[1].extents = {{d0 + 4096, 1024}, {d0 + 8192, 1032}};
  a.copies[1].generation = 2; a.copies[1].crc32c = 7; a.copies[1].chunk_crc32c = {1, 2};
  a.copies[1].path = MirrorPath::kBounce; a.current_copy = 1;
  SliceEntry b; b.name = "x"; b.offset_bytes = 4 << 20; b.length_bytes = 1;
  b.copies.resize(1); b.copies[0].extents = {{d0 + 16384, 8}};
  t.slices = {a, b};
  auto slot = *encode_slot(sb, t);
  slot.resize(1024);  // the payload ends well before; keep files small
  put(dir, "slot-valid", 1, slot);
  auto e = slot; e[70] ^= 0x10; put(dir, "slot-payload-bitflip", 1, e);
  e = slot; e[20] ^= 0x10; put(dir, "slot-header-bitflip", 1, e);
  put(dir, "slot-truncated", 1, std::vector<uint8_t>(slot.begin(), slot.begin() + 90));
  // A history of generations (format --copies 3, FORMAT.md §3, §7).
  Superblock gens = sb; gens.mirror_copies = 3;
  gens.incompat_features = kIncompatSliceIds | kIncompatGenerations;
  put(dir, "sb-copies3", 0, encode_superblock(gens));
  SliceTable h; h.generation = 9; h.next_slice_id = 2;
  SliceEntry g; g.id = 1; g.name = "history"; g.length_bytes = 4096;
  g.copies.resize(3);
  for (uint32_t c = 0; c < 3; ++c) {
    g.copies[c].extents = {{d0 + 8 * c, 8}};
    g.copies[c].generation = 4 + c; g.copies[c].crc32c = c;
    g.copies[c].chunk_crc32c = {c}; g.copies[c].path = MirrorPath::kBounce;
  }
  g.current_copy = 2; h.slices = {g};
  auto hs = *encode_slot(sb, h); hs.resize(1024); put(dir, "slot-copies3", 1, hs);
  SliceTable empty; empty.generation = 1;
  auto es = *encode_slot(sb, empty); es.resize(64); put(dir, "slot-empty", 1, es);
  return 0;
}
