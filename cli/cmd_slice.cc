// pcimirror slice add|rm|rename DEVICE ...: change slices offline (the
// volume must not be mounted). Each change is one metadata commit.
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "fs/slice_table.h"
#include "io/units.h"

namespace pcimirror::cli {
namespace {

Result<SliceSpec> parse_slice_spec(const std::string& text) {
  size_t a = text.find(':');
  size_t b = a == std::string::npos ? a : text.find(':', a + 1);
  if (a == std::string::npos || b == std::string::npos)
    return make_error(EINVAL, "slice '" + text + "': use NAME:OFFSET:LENGTH, e.g. log:200M:16M");
  SliceSpec s;
  s.name = text.substr(0, a);
  PCIM_ASSIGN_OR_RETURN(s.offset_bytes, parse_size_bytes(text.substr(a + 1, b - a - 1), "slice offset"));
  PCIM_ASSIGN_OR_RETURN(s.length_bytes, parse_size_bytes(text.substr(b + 1), "slice length"));
  return s;
}

int edit(const std::string& device, const std::function<Status(Volume&, SliceTable&)>& f,
         const std::string& done) {
  auto vol = open_volume(device, true);
  if (!vol.ok()) return fail(vol.error());
  SliceTable next = vol->table();
  if (Status s = f(*vol, next); !s.ok()) return fail(s.error());
  if (Status c = vol->commit(std::move(next)); !c.ok()) return fail(c.error());
  std::cout << done << " (metadata generation " << vol->table().generation << ")\n";
  return kOk;
}

}  // namespace

void add_slice(CLI::App& app, int& rc) {
  CLI::App* c = app.add_subcommand("slice", "Add, remove or rename slices offline");
  c->require_subcommand(1);
  struct Args {
    std::string device, spec, name, to;
  };
  auto a = std::make_shared<Args>();
  CLI::App* add = c->add_subcommand("add", "Add NAME:OFFSET:LENGTH with fresh mirror extents");
  add->add_option("device", a->device, "Block device or image file")->required();
  add->add_option("slice", a->spec, "NAME:OFFSET:LENGTH (sizes take K/M/G)")->required();
  add->callback([a, &rc] {
    auto s = parse_slice_spec(a->spec);
    if (!s.ok()) {
      rc = fail(s.error());
      return;
    }
    rc = edit(a->device, [&](Volume& v, SliceTable& t) {
      SliceEntry e;
      e.name = s->name;
      e.offset_bytes = s->offset_bytes;
      e.length_bytes = s->length_bytes;
      e.atime_ns = e.mtime_ns = e.ctime_ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(
              std::chrono::system_clock::now().time_since_epoch()).count();
      return add_slice_to(v, t, std::move(e));
    }, "added slice " + s->name);
  });
  CLI::App* rm = c->add_subcommand("rm", "Remove a slice (its mirror; memory is untouched)");
  rm->add_option("device", a->device, "Block device or image file")->required();
  rm->add_option("name", a->name, "Slice")->required();
  rm->callback([a, &rc] {
    rc = edit(a->device, [&](Volume&, SliceTable& t) { return remove_slice_from(t, a->name); },
              "removed slice " + a->name);
  });
  CLI::App* mv = c->add_subcommand("rename", "Rename a slice");
  mv->add_option("device", a->device, "Block device or image file")->required();
  mv->add_option("name", a->name, "Slice")->required();
  mv->add_option("new_name", a->to, "New name")->required();
  mv->callback([a, &rc] {
    rc = edit(a->device,
              [&](Volume&, SliceTable& t) { return rename_slice_in(t, a->name, a->to, false); },
              "renamed slice " + a->name + " to " + a->to);
  });
}

}  // namespace pcimirror::cli
