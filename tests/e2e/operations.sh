#!/usr/bin/env bash
# Operations on a real loop device: config files and settings precedence,
# xattrs, mirror_on_close, interval mirroring, slices changed online
# (pcimirror slice ... MOUNTPOINT: one commit each, visible at once) and
# offline (pcimirror slice ... DEVICE), and `pcimirror umount`.
source "$(dirname "$0")/lib.sh"
command -v getfattr >/dev/null || skip "no getfattr (apt-get install attr)"
P=$PCIMIRROR

DEV=$(new_loop 256M)
MNT=$(new_mountpoint mnt)
"$P" format "$DEV" --memory "file=$SHM.ram,size=64M" --slice a:0:4M --slice b:4M:4M --slice c:8M:1M >/dev/null
gen() { "$P" status "$DEV" --json | jq -r --arg n "$1" '.slices[] | select(.name==$n) | .generation'; }
meta() { "$P" status "$DEV" --json | jq .metadata_generation; }
xattr() { getfattr --only-values -n "user.pcimirror.$2" "$MNT/$1"; }
umount_all() { "$P" umount "$MNT" >/dev/null; }

log "config file: /etc/pcimirror/NAME.conf (here PCIMIRROR_CONFIG_DIR), command line overrides it"
export PCIMIRROR_CONFIG_DIR=$WORK/conf
mkdir -p "$PCIMIRROR_CONFIG_DIR"
cat >"$PCIMIRROR_CONFIG_DIR/lab.conf" <<CONF
# pcimirror.conf(5)
source = "$DEV"
mountpoint = "$MNT"
file = "$SHM.ram"
bounce = "always"
mirror_on_close = "sync"
CONF
"$P" mount --config lab
random_file "$WORK/a1" 4
cp "$WORK/a1" "$MNT/a"
[[ $(xattr a path) == bounce ]] || die "config's bounce=always not applied: $(xattr a path)"
umount_all
"$P" mount --config lab --bounce never
cp "$WORK/a1" "$MNT/a"
[[ $(xattr a path) == zero-copy ]] || die "--bounce never did not override the config"
umount_all
"$P" mount --config lab -o bounce=always --bounce never
cp "$WORK/a1" "$MNT/a"
[[ $(xattr a path) == bounce ]] || die "-o did not override --bounce"
umount_all
echo 'colour = "red"' >>"$PCIMIRROR_CONFIG_DIR/lab.conf"
if out=$("$P" mount --config lab 2>&1); then die "unknown config key accepted"; fi
grep -q "colour" <<<"$out" || die "message: $out"
sed -i '/colour/d' "$PCIMIRROR_CONFIG_DIR/lab.conf"

log "xattrs"
"$P" mount --config lab -o mirror_on_close=off
getfattr -d -m pcimirror "$MNT/a"
[[ $(xattr a generation) == $(gen a) ]] || die "generation xattr"
[[ $(xattr a crc32c) == $("$P" status "$DEV" --json | jq -r '.slices[0].crc32c_hex') ]] || die "crc32c xattr"
[[ $(xattr a state) == clean ]] || die "state should be clean"
[[ $(xattr a progress) == "4194304/4194304" ]] || die "progress xattr: $(xattr a progress)"
xattr a last_sync | grep -qE '^20[0-9]{2}-[0-9]{2}-[0-9]{2}T' || die "last_sync xattr"

log "mirror_on_close=off: cp leaves the slice dirty; pcimirror umount mirrors it"
g=$(gen b)
cp "$WORK/a1" "$MNT/b"
[[ $(gen b) == "$g" ]] || die "mirror_on_close=off mirrored at close"
[[ $(xattr b state) == dirty ]] || die "state should be dirty: $(xattr b state)"
"$P" umount "$MNT" | grep -q "mirrored dirty slice b" || die "umount did not mirror b"
[[ $(gen b) == $((g + 1)) ]] || die "umount's final mirror"
mountpoint -q "$MNT" && die "still mounted"

log "mirror_on_close=async: close returns at once, the mirror follows"
"$P" mount --config lab -o mirror_on_close=async
g=$(gen c)
head -c 1048576 /dev/urandom >"$MNT/c"
for _ in $(seq 50); do [[ $(gen c) == "$g" ]] || break; sleep 0.1; done
[[ $(gen c) == $((g + 1)) ]] || die "async mirror did not happen"
umount_all

log "interval=1s mirrors every slice; with host_only_writes only written ones"
ga=$(gen a); gc=$(gen c)
"$P" mount --config lab -o interval=1s,mirror_on_close=off
sleep 2.5
umount_all
(($(gen a) >= ga + 2 && $(gen c) >= gc + 2)) || die "interval did not mirror all slices ($ga->$(gen a), $gc->$(gen c))"
ga=$(gen a); gc=$(gen c)
"$P" mount --config lab -o interval=1s,host_only_writes,mirror_on_close=off
echo x | dd of="$MNT/c" conv=notrunc status=none
sleep 2.5
umount_all
[[ $(gen a) == "$ga" ]] || die "host_only_writes mirrored an unwritten slice"
(($(gen c) == gc + 1)) || die "host_only_writes did not mirror the written slice once ($gc->$(gen c))"

log "pcimirror sync of several slices: one group commit"
"$P" mount --config lab
m=$(meta); ga=$(gen a); gb=$(gen b); gc=$(gen c)
"$P" sync "$MNT" | grep -q "synced 3 slices" || die "group sync output"
[[ $(meta) == $((m + 1)) ]] || die "group sync took $(( $(meta) - m )) commits"
[[ $(gen a) == $((ga + 1)) && $(gen b) == $((gb + 1)) && $(gen c) == $((gc + 1)) ]] || die "group sync generations"

log "online: pcimirror slice add|rename|rm MOUNTPOINT, one commit each, visible at once"
m=$(meta)
"$P" slice rename "$MNT" a renamed
[[ $(meta) == $((m + 1)) && -n $(gen renamed) && -z $(gen a) ]] || die "online rename"
[[ ! -e $MNT/a && -e $MNT/renamed ]] || die "rename not visible at once"
cmp "$WORK/a1" "$MNT/renamed" || die "renamed slice lost its memory"
head -c 1M "$SHM.ram" >"$WORK/before-rm"
"$P" slice rm "$MNT" renamed
[[ $(meta) == $((m + 2)) && -z $(gen renamed) && ! -e $MNT/renamed ]] || die "online rm"
cmp "$WORK/before-rm" <(head -c 1M "$SHM.ram") || die "rm changed device memory"
"$P" slice add "$MNT" new1:12M:1M
[[ $(meta) == $((m + 3)) && -e $MNT/new1 ]] || die "online add: not visible at once"
[[ $(stat -c %s "$MNT/new1") == 1048576 ]] || die "new1 size"
[[ $(slice_field "$DEV" new1 offset_bytes) == $((12 << 20)) ]] || die "new1 window"
random_file "$WORK/n2" 3
"$P" slice add "$MNT" new2:16M:3M
cp "$WORK/n2" "$MNT/new2"  # mirror_on_close=sync: the first mirror
[[ $(meta) == $((m + 5)) && $(gen new2) == 1 ]] || die "cp onto an added slice did not mirror"
mirror_of "$DEV" new2 "$WORK/n2.disk"
cmp "$WORK/n2" "$WORK/n2.disk" || die "new2's mirror differs"
log "online refusals change nothing"
before=$(device_sum "$DEV"); m=$(meta)
if out=$("$P" slice add "$MNT" bad:12M:4K 2>&1); then die "overlapping slice added online"; fi
grep -q "overlap" <<<"$out" || die "message: $out"
if out=$("$P" slice rename "$MNT" b c 2>&1); then die "rename over a slice accepted"; fi
grep -q "File exists" <<<"$out" || die "message: $out"
if out=$("$P" slice rm "$MNT" nope 2>&1); then die "rm of a missing slice"; fi
grep -q "No such file" <<<"$out" || die "message: $out"
if out=$("$P" slice add "$DEV" x:30M:1M 2>&1); then die "offline edit of a mounted device"; fi
grep -q "is mounted on $MNT" <<<"$out" || die "message: $out"
[[ $(meta) == "$m" && $(device_sum "$DEV") == "$before" ]] || die "a refused edit changed the device"
umount_all
"$P" fsck "$DEV" --verify >/dev/null || die "fsck after the changes"
"$P" restore "$DEV" --memory "file=$SHM.r,size=64M" new2 >/dev/null
off=$("$P" status "$DEV" --json | jq '.slices[] | select(.name=="new2") | .offset_bytes')
cmp "$WORK/n2" <(tail -c +$((off + 1)) "$SHM.r" | head -c 3145728) || die "restore of new2"

log "offline: pcimirror slice add|rename|rm"
m=$(meta)
"$P" slice add "$DEV" log:40M:2M
"$P" slice rename "$DEV" log journal
"$P" slice rm "$DEV" new1
[[ $(meta) == $((m + 3)) ]] || die "offline edits: one commit each"
[[ -n $(gen journal) && -z $(gen new1) ]] || die "offline edits not visible"
if "$P" slice add "$DEV" bad:41M:1M 2>/dev/null; then die "overlapping slice added"; fi
"$P" fsck "$DEV" >/dev/null || die "fsck after offline edits"

log "progress: a bar on a terminal, plain lines otherwise"
script -qec "$P fsck $DEV --verify" /dev/null | tr '\r' '\n' | grep -q "MB/s  ETA" || die "no progress bar on a TTY"
! "$P" fsck "$DEV" --verify | grep -q ETA || die "progress bar in a pipe"
truncate -s 64M "$WORK/fmt.img"
script -qec "$P format $WORK/fmt.img --memory memfd=x,size=1M --slice a:0:4K" /dev/null \
  | tr '\r' '\n' | grep -q "^format .*100%" || die "no progress bar for format"

log "status on a mount point shows the daemon's live state"
"$P" mount --config lab -o mirror_on_close=off
echo x | dd of="$MNT/journal" conv=notrunc status=none
"$P" status "$MNT" | grep -qE "^ *[0-9]+ journal .* dirty$" || die "status does not show the dirty state"
[[ $("$P" status "$MNT" --json | jq -r '.slices[] | select(.name=="journal") | .state') == dirty ]] \
  || die "status --json state"
umount_all
echo "PASS operations"
