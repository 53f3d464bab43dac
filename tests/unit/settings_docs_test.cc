// The table of settings (cli/settings.cc) is the one list of mount options.
// These tests hold everything else to it, so they cannot drift apart: the
// parser (cli/mount_options.cc), `pcimirror --help`, `mount --help`,
// `restore --help`, pcimirror(8), pcimirror.conf(5) and the bash
// completion. Each compares option names (and their groups and flag-ness)
// both ways: nothing missing, nothing extra.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/mount_options.h"
#include "cli/settings.h"
#include "pcimap/region_factory.h"

namespace pcimirror::cli {
namespace {

using KeyGroups = std::map<std::string, std::string>;  // key -> group

std::string read_source(const std::string& relative) {
  const std::string path = std::string(PCIMIRROR_SOURCE_DIR) + "/" + relative;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// stdout and stderr of `pcimirror ARGS`.
std::string run_pcimirror(const std::string& args) {
  const std::string cmd =
      std::string("'") + PCIMIRROR_BIN + "' " + args + " 2>&1 </dev/null";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr) << cmd;
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << cmd << "\n" << out;
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool is_group(const std::string& name) {
  for (const char* g : setting_groups())
    if (name == g) return true;
  return false;
}

// The table's settings that apply to `use` (all with ~0u).
KeyGroups table_keys(unsigned use = ~0u) {
  KeyGroups out;
  for (const SettingInfo& s : setting_table())
    if (s.use & use) out[s.name] = s.group;
  return out;
}

// (No std::regex here: g++ 12 warns inside <regex> under the sanitizers.)
bool is_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

// A setting's name: lower-case letters, digits and '_', starting with a
// letter ("c2h").
bool is_key_word(const std::string& w) {
  if (w.empty() || !(w[0] >= 'a' && w[0] <= 'z')) return false;
  for (char c : w)
    if (!is_key_char(c)) return false;
  return true;
}

// The key-like word at `pos` of `text` ("" if none).
std::string key_at(const std::string& text, size_t pos) {
  size_t end = pos;
  while (end < text.size() && is_key_char(text[end])) ++end;
  return text.substr(pos, end - pos);
}

// The option named on a CLI11 help line ("  -f,--foreground  ...",
// "  --bounce auto|...  ..."): "foreground", "bounce"; "" for other lines.
std::string help_line_option(const std::string& line) {
  if (line.rfind("  ", 0) != 0) return "";
  size_t i = 2;
  if (line.size() > i + 2 && line[i] == '-' && line[i + 1] != '-' &&
      line[i + 2] == ',')
    i += 3;
  if (line.compare(i, 2, "--") != 0) return "";
  return key_at(line, i + 2);
}

// "--key" options of a CLI11 help text, with the group heading each is
// listed under ("Options", "Memory", ...).
KeyGroups help_options(const std::string& help) {
  KeyGroups out;
  std::string group;
  for (const std::string& line : lines_of(help)) {
    if (!line.empty() && line[0] != ' ' && line.back() == ':')
      group = line.substr(0, line.size() - 1);
    else if (const std::string name = help_line_option(line); !name.empty())
      out[name] = group;
  }
  return out;
}

// The keys quoted after each occurrence of `prefix` in `text`
// (`key == "ro"` with prefix `key == "`).
std::vector<std::string> keys_after(const std::string& text,
                                    const std::string& prefix) {
  std::vector<std::string> out;
  for (size_t i = text.find(prefix); i != std::string::npos;
       i = text.find(prefix, i + 1)) {
    const std::string k = key_at(text, i + prefix.size());
    if (!k.empty() && text.compare(i + prefix.size() + k.size(), 1, "\"") == 0)
      out.push_back(k);
  }
  return out;
}

// The lines of man page section `name` (from ".SH name" to the next .SH).
std::vector<std::string> man_section(const std::string& page,
                                     const std::string& name) {
  std::vector<std::string> out;
  bool in = false;
  for (const std::string& line : lines_of(page)) {
    if (line.rfind(".SH ", 0) == 0) {
      if (in) break;
      in = line == ".SH " + name || line == ".SH \"" + name + "\"";
      continue;
    }
    if (in) out.push_back(line);
  }
  EXPECT_FALSE(out.empty()) << "no section " << name;
  return out;
}

// The words of a man macro line after the macro, double quotes respected.
std::vector<std::string> macro_args(const std::string& line) {
  std::vector<std::string> out;
  size_t i = line.find(' ');
  while (i != std::string::npos && i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    if (i >= line.size()) break;
    std::string word;
    if (line[i] == '"') {
      size_t end = line.find('"', i + 1);
      word = line.substr(i + 1, end == std::string::npos ? end : end - i - 1);
      i = end == std::string::npos ? end : end + 1;
    } else {
      size_t end = line.find(' ', i);
      word = line.substr(i, end == std::string::npos ? end : end - i);
      i = end;
    }
    out.push_back(word);
  }
  return out;
}

std::string group_heading(const std::string& ss_line) {
  std::string g = ss_line.substr(4);
  if (g.size() >= 2 && g.front() == '"' && g.back() == '"')
    g = g.substr(1, g.size() - 2);
  return g;
}

// pcimirror(8), MOUNT OPTIONS: ".SS GROUP" headings, then one ".TP" per
// setting whose tag line starts with the key ("file=", "ro").
KeyGroups man8_keys() {
  KeyGroups out;
  std::string group;
  bool tag_next = false;
  for (const std::string& line :
       man_section(read_source("packaging/pcimirror.8"), "MOUNT OPTIONS")) {
    if (line.rfind(".SS ", 0) == 0) {
      group = group_heading(line);
    } else if (line == ".TP") {
      tag_next = true;
    } else if (tag_next) {
      tag_next = false;
      std::vector<std::string> args = macro_args(line);
      EXPECT_FALSE(args.empty()) << "empty tag: " << line;
      if (args.empty()) continue;
      std::string key = args[0].substr(0, args[0].find('='));
      EXPECT_EQ(out.count(key), 0u) << key << " listed twice";
      out[key] = group;
    }
  }
  return out;
}

// pcimirror.conf(5), KEYS: ".SS GROUP" headings, each followed by the keys
// in bold (.B, or the even words of .BR).
KeyGroups conf5_keys() {
  KeyGroups out;
  std::string group;
  for (const std::string& line :
       man_section(read_source("packaging/pcimirror.conf.5"), "KEYS")) {
    if (line.rfind(".SS ", 0) == 0) {
      group = group_heading(line);
      continue;
    }
    if (group.empty()) continue;
    const bool b = line.rfind(".B ", 0) == 0, br = line.rfind(".BR ", 0) == 0;
    if (!b && !br) continue;
    std::vector<std::string> args = macro_args(line);
    for (size_t i = 0; i < args.size(); i += br ? 2 : 1) {
      std::string w = args[i];
      while (!w.empty() && (w.back() == ',' || w.back() == '.')) w.pop_back();
      if (!is_key_word(w)) continue;
      EXPECT_EQ(out.count(w), 0u) << w << " listed twice";
      out[w] = group;
    }
  }
  return out;
}

// A word list of the completion script: `local NAME="a= b ..."`; key ->
// "flag" or "value".
std::map<std::string, std::string> completion_keys(const std::string& name) {
  const std::string script = read_source("packaging/pcimirror.bash-completion");
  std::map<std::string, std::string> out;
  const std::string start = "local " + name + "=\"";
  const size_t a = script.find(start);
  EXPECT_NE(a, std::string::npos) << "no list " << name;
  if (a == std::string::npos) return out;
  const size_t b = script.find('"', a + start.size());
  std::istringstream words(
      script.substr(a + start.size(), b - a - start.size()));
  for (std::string w; words >> w;) {
    const bool value = w.back() == '=';
    if (value) w.pop_back();
    EXPECT_EQ(out.count(w), 0u) << w << " listed twice";
    out[w] = value ? "value" : "flag";
  }
  return out;
}

// What `doc` lacks, has in excess, or files differently, against `table`.
std::string drift(const std::map<std::string, std::string>& doc,
                  const std::map<std::string, std::string>& table) {
  std::string out;
  for (const auto& [k, v] : table) {
    auto it = doc.find(k);
    if (it == doc.end())
      out += "\n  missing: " + k + " (" + v + ")";
    else if (it->second != v)
      out += "\n  " + k + ": " + it->second + ", the table says " + v;
  }
  for (const auto& [k, v] : doc)
    if (!table.count(k)) out += "\n  not in the table: " + k + " (" + v + ")";
  return out;
}

std::map<std::string, std::string> table_kinds(unsigned use) {
  std::map<std::string, std::string> out;
  for (const SettingInfo& s : setting_table())
    if (s.use & use) out[s.name] = s.flag ? "flag" : "value";
  return out;
}

// A valid -o item for every setting; a new setting needs one here.
const std::map<std::string, std::string>& examples() {
  static const std::map<std::string, std::string> m = {
      {"file", "file=/dev/shm/x.ram"},
      {"memfd", "memfd=board"},
      {"size", "size=1M"},
      {"pci", "pci=0000:03:00.0"},
      {"vendor", "vendor=0x1af4"},
      {"device", "device=0x1110"},
      {"index", "index=1"},
      {"bar", "bar=2"},
      {"window", "window=0:4096"},
      {"c2h", "c2h=/dev/xdma0_c2h_0"},
      {"h2c", "h2c=/dev/xdma0_h2c_0"},
      {"xdma", "xdma=/dev/xdma0"},
      {"card_offset", "card_offset=0x100000"},
      {"dma_align", "dma_align=64"},
      {"ignore_device_id", "ignore_device_id"},
      {"bounce", "bounce=always"},
      {"queue_depth", "queue_depth=8"},
      {"io_size", "io_size=64K"},
      {"bounce_buffers", "bounce_buffers=4"},
      {"copy_threads", "copy_threads=1"},
      {"max_write", "max_write=64K"},
      {"mirror_on_close", "mirror_on_close=async"},
      {"write_behind", "write_behind=off"},
      {"interval", "interval=30s"},
      {"host_only_writes", "host_only_writes"},
      {"accept_memory", "accept_memory"},
      {"ups", "ups=myups@localhost"},
      {"ups_interval", "ups=myups@localhost:3493,ups_interval=10s"},
      {"ups_margin", "ups=myups@[::1]:3493,ups_margin=1.5"},
      {"restore", "restore=on_mount"},
      {"restore_verify", "restore_verify=inline"},
      {"ro", "ro"},
      {"uid", "uid=1000"},
      {"gid", "gid=1000"},
      {"umask", "umask=022"},
      {"allow_other", "allow_other,default_permissions"},
      {"default_permissions", "default_permissions"},
      {"uuid", "uuid=00000000-0000-4000-8000-000000000000"},
      {"debug", "debug"},
  };
  return m;
}

TEST(SettingsTable, IsWellFormed) {
  std::set<std::string> names;
  size_t group_index = 0;
  const auto groups = setting_groups();
  ASSERT_FALSE(setting_table().empty());
  for (const SettingInfo& s : setting_table()) {
    EXPECT_TRUE(names.insert(s.name).second) << s.name << " twice";
    EXPECT_TRUE(is_key_word(s.name)) << s.name;
    EXPECT_TRUE(is_group(s.group)) << s.name << ": group " << s.group;
    // Grouped, in the order of setting_groups().
    while (group_index < groups.size() &&
           std::strcmp(groups[group_index], s.group) != 0)
      ++group_index;
    EXPECT_LT(group_index, groups.size()) << s.name << " out of group order";
    EXPECT_EQ(s.flag, s.value[0] == '\0') << s.name;
    EXPECT_NE(s.default_value[0], '\0') << s.name << " shows no default";
    EXPECT_NE(s.help[0], '\0') << s.name;
    EXPECT_NE(s.use & kUseMount, 0u) << s.name << ": every setting is mount's";
  }
  for (const char* g : groups) {
    bool used = false;
    for (const SettingInfo& s : setting_table()) used |= !strcmp(s.group, g);
    EXPECT_TRUE(used) << "empty group " << g;
  }
}

TEST(SettingsTable, MatchesTheParser) {
  for (const SettingInfo& s : setting_table()) {
    auto ex = examples().find(s.name);
    ASSERT_NE(ex, examples().end()) << "add an example for " << s.name;
    EXPECT_TRUE(parse_mount_options(ex->second).ok())
        << ex->second << ": " << parse_mount_options(ex->second).error().what();
    // Flag-ness as the parser sees it.
    const std::string wrong = s.flag ? std::string(s.name) + "=1" : s.name;
    EXPECT_FALSE(parse_mount_options(wrong).ok())
        << "-o " << wrong << " accepted";
    // Memory keys are the memory spec's keys.
    const bool memory_spec_key = std::strcmp(s.group, "Memory") == 0 &&
                                 std::strcmp(s.name, "ignore_device_id") != 0;
    EXPECT_EQ(MemorySpec::is_memory_key(s.name), memory_spec_key) << s.name;
  }
  EXPECT_EQ(examples().size(), setting_table().size())
      << "examples for settings that are not in the table";
  // Every key the parser or the memory spec knows is in the table.
  const KeyGroups table = table_keys();
  const std::string source = read_source("cli/mount_options.cc");
  const size_t body = source.find("Result<MountOptions> parse_mount_options(");
  ASSERT_NE(body, std::string::npos) << "cli/mount_options.cc: no parser";
  const std::string parser = source.substr(body);
  const std::vector<std::string> compared = keys_after(parser, "key == \"");
  for (const std::string& k : compared)
    EXPECT_EQ(table.count(k), 1u)
        << "the parser takes -o " << k << ", the table lacks it";
  EXPECT_GT(compared.size(), 10u)
      << "cli/mount_options.cc no longer compares key == \"...\"";
  const std::string spec = read_source("pcimap/region_factory.cc");
  const size_t a = spec.find("kKeys = {"), b = spec.find("};", a);
  ASSERT_NE(a, std::string::npos) << "pcimap/region_factory.cc: no kKeys";
  const std::string keys = spec.substr(a, b - a);
  const std::vector<std::string> quoted = keys_after(keys, "\"");
  EXPECT_EQ(quoted.size(), 14u) << keys;
  for (const std::string& k : quoted)
    EXPECT_EQ(table.count(k), 1u)
        << "memory spec key " << k << " is not in the table";
}

TEST(SettingsHelp, TopLevelShowsCommandsAndGlobalFlagsOnly) {
  const std::string help = run_pcimirror("--help");
  const KeyGroups options = help_options(help);
  for (const SettingInfo& s : setting_table())
    EXPECT_EQ(options.count(s.name), 0u) << "--" << s.name << " at the top";
  std::set<std::string> names;
  for (const auto& [name, group] : options) names.insert(name);
  EXPECT_EQ(names, (std::set<std::string>{"config", "help", "version"}))
      << help;
  EXPECT_NE(help.find("Subcommands:"), std::string::npos) << help;
}

TEST(SettingsHelp, MountListsEverySettingInItsGroupWithItsDefault) {
  const std::string help = run_pcimirror("mount --help");
  KeyGroups shown = help_options(help);
  for (auto it = shown.begin(); it != shown.end();)
    it = is_group(it->second) ? std::next(it) : shown.erase(it);
  EXPECT_EQ(shown, table_keys(kUseMount))
      << drift(shown, table_keys(kUseMount)) << "\n"
      << help;
  for (const std::string& line : lines_of(help)) {
    if (line.rfind("  --", 0) == 0 &&
        line.find("--source") == std::string::npos &&
        line.find("--mountpoint") == std::string::npos) {
      EXPECT_NE(line.find("[default: "), std::string::npos) << line;
    }
  }
  // The -o line points to that list.
  bool o_points_to_list = false;
  for (const std::string& line : lines_of(help))
    o_points_to_list |= line.rfind("  -o ", 0) == 0 &&
                        line.find("every --KEY") != std::string::npos;
  EXPECT_TRUE(o_points_to_list) << help;
}

TEST(SettingsHelp, RestoreListsTheSettingsThatApplyToIt) {
  const std::string help = run_pcimirror("restore --help");
  KeyGroups shown = help_options(help);
  for (auto it = shown.begin(); it != shown.end();)
    it = is_group(it->second) ? std::next(it) : shown.erase(it);
  EXPECT_EQ(shown, table_keys(kUseRestore))
      << drift(shown, table_keys(kUseRestore)) << "\n"
      << help;
}

TEST(SettingsDocs, ManPageListsEverySettingInItsGroup) {
  EXPECT_EQ(man8_keys(), table_keys())
      << "pcimirror(8):" << drift(man8_keys(), table_keys());
}

TEST(SettingsDocs, ConfManPageListsEverySettingInItsGroup) {
  EXPECT_EQ(conf5_keys(), table_keys())
      << "pcimirror.conf(5):" << drift(conf5_keys(), table_keys());
}

TEST(SettingsDocs, CompletionListsEverySetting) {
  EXPECT_EQ(completion_keys("settings"), table_kinds(kUseMount))
      << drift(completion_keys("settings"), table_kinds(kUseMount));
  EXPECT_EQ(completion_keys("restore_settings"), table_kinds(kUseRestore))
      << drift(completion_keys("restore_settings"), table_kinds(kUseRestore));
}

}  // namespace
}  // namespace pcimirror::cli
