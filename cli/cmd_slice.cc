// pcimirror slice add|rm|rename DEVICE|MOUNTPOINT ...: declare, remove or
// rename slices. On a DEVICE (not mounted) each change is one metadata
// commit made here; on a MOUNTPOINT the daemon makes it, online, through the
// root's control xattrs (fs/control_xattr.h), and the file appears or goes
// at once. The mount itself never creates, moves or deletes a slice.
#include <sys/xattr.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "fs/control_xattr.h"
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

// Offline: the volume on `device`, opened exclusively.
int edit_offline(const std::string& device,
                 const std::function<Status(Volume&, SliceTable&)>& f,
                 const std::string& done) {
  if (auto mnt = mountpoint_of_device(device))
    return fail(device + " is mounted on " + *mnt +
                "; change its slices through the mount: pcimirror slice ... " +
                *mnt + " (or unmount it first)");
  auto vol = open_volume(device, true);
  if (!vol.ok()) return fail(vol.error());
  SliceTable next = vol->table();
  if (Status s = f(*vol, next); !s.ok()) return fail(s.error());
  if (Status c = vol->commit(std::move(next)); !c.ok()) return fail(c.error());
  std::cout << done << " (metadata generation " << vol->table().generation << ")\n";
  return kOk;
}

// Online: one control request to the daemon serving `mountpoint`.
int edit_online(const std::string& mountpoint, const char* xattr,
                const std::string& value, const std::string& what,
                const std::string& done) {
  if (::setxattr(mountpoint.c_str(), xattr, value.data(), value.size(), 0) !=
      0) {
    const int err = errno;
    return fail(what + " on " + mountpoint + " failed (" + std::strerror(err) +
                "): " + control_error_detail(mountpoint, err) +
                "; nothing was changed");
  }
  std::cout << done << " on " << mountpoint << "\n";
  return kOk;
}

}  // namespace

void add_slice(CLI::App& app, int& rc) {
  CLI::App* c = app.add_subcommand(
      "slice",
      "Declare, remove or rename slices, on a device or a mount point");
  c->require_subcommand(1);
  struct Args {
    std::string target, spec, name, to;
  };
  auto a = std::make_shared<Args>();
  const char* target_help =
      "Block device or image file (unmounted), or the mount point of a "
      "mounted volume (the daemon makes the change online)";
  CLI::App* add = c->add_subcommand(
      "add",
      "Declare NAME:OFFSET:LENGTH with fresh mirror extents; device "
      "memory is untouched");
  add->add_option("target", a->target, target_help)->required();
  add->add_option("slice", a->spec, "NAME:OFFSET:LENGTH (sizes take K/M/G)")->required();
  add->callback([a, &rc] {
    auto s = parse_slice_spec(a->spec);
    if (!s.ok()) {
      rc = fail(s.error());
      return;
    }
    if (device_of_mountpoint(a->target)) {
      rc = edit_online(a->target, kSliceAddXattr, encode_slice_add(*s),
                       "adding slice " + s->name, "added slice " + s->name);
      return;
    }
    rc = edit_offline(
        a->target,
        [&](Volume& v, SliceTable& t) {
          SliceEntry e;
          e.name = s->name;
          e.offset_bytes = s->offset_bytes;
          e.length_bytes = s->length_bytes;
          e.atime_ns = e.mtime_ns = e.ctime_ns =
              std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
          auto id = add_slice_to(v, t, std::move(e));
          return id.ok() ? Status{} : Status{id.take_error()};
        },
        "added slice " + s->name);
  });
  CLI::App* rm = c->add_subcommand(
      "rm", "Remove a slice and free its mirror; device memory is untouched");
  rm->add_option("target", a->target, target_help)->required();
  rm->add_option("name", a->name, "Slice")->required();
  rm->callback([a, &rc] {
    if (device_of_mountpoint(a->target)) {
      rc = edit_online(a->target, kSliceRmXattr, a->name,
                       "removing slice " + a->name, "removed slice " + a->name);
      return;
    }
    rc = edit_offline(
        a->target,
        [&](Volume&, SliceTable& t) -> Status {
          PCIM_ASSIGN_OR_RETURN(uint64_t id, slice_id_of(t, a->name));
          return remove_slice_from(t, id);
        },
        "removed slice " + a->name);
  });
  CLI::App* mv =
      c->add_subcommand("rename", "Rename a slice (its window stays)");
  mv->add_option("target", a->target, target_help)->required();
  mv->add_option("name", a->name, "Slice")->required();
  mv->add_option("new_name", a->to, "New name")->required();
  mv->callback([a, &rc] {
    const std::string done = "renamed slice " + a->name + " to " + a->to;
    if (device_of_mountpoint(a->target)) {
      rc = edit_online(a->target, kSliceRenameXattr,
                       encode_slice_rename(a->name, a->to),
                       "renaming slice " + a->name, done);
      return;
    }
    rc = edit_offline(
        a->target,
        [&](Volume&, SliceTable& t) -> Status {
          PCIM_ASSIGN_OR_RETURN(uint64_t id, slice_id_of(t, a->name));
          return rename_slice_in(t, id, a->to);
        },
        done);
  });
}

}  // namespace pcimirror::cli
