#!/usr/bin/env bash
# fstab: `mount -a` with a fuse.pcimirror line (mount(8) -> mount.fuse3 ->
# `pcimirror SOURCE MOUNTPOINT -o OPTIONS`) and `umount`, in a private mount
# namespace (unshare -m), against a loop device and the emulated region.
source "$(dirname "$0")/lib.sh"
command -v unshare >/dev/null || skip "no unshare"
[[ -x /sbin/mount.fuse3 ]] || skip "no mount.fuse3 (apt-get install fuse3)"
# mount.fuse3 looks for `pcimirror` in the standard PATH only; with a build
# tree, the namespace gets a bind mount of a symlink over /usr/local/sbin.
INSTALLED=${PCIMIRROR_INSTALLED:-0}

DEV=$(new_loop 128M)
MNT=$(new_mountpoint mnt)
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=16M" --slice a:0:4M --slice b:4M:4M >/dev/null
BIN=$WORK/bin && mkdir -p "$BIN" && ln -s "$PCIMIRROR" "$BIN/pcimirror"
BIND="mount --bind $BIN /usr/local/sbin"
[[ $INSTALLED == 1 ]] && BIND=true
random_file "$WORK/a" 4
cat >"$WORK/fstab" <<FSTAB
# device  mountpoint  type  options  dump  pass
$DEV $MNT fuse.pcimirror file=$SHM.ram,nofail,bounce=auto,x-pcimirror.note=1 0 0
FSTAB
unshare -m bash -euo pipefail -c "
  mount --make-rprivate /
  $BIND
  mount -a -T $WORK/fstab
  findmnt -n -o SOURCE,FSTYPE,OPTIONS $MNT
  findmnt -n -o FSTYPE $MNT | grep -qx fuse.pcimirror
  findmnt -n -o OPTIONS $MNT | grep -q nosuid
  cp $WORK/a $MNT/a
  cmp $WORK/a $MNT/a
  umount $MNT
"
wait_released "$DEV"
[[ $(slice_field "$DEV" a generation) == 1 ]] || die "cp through the fstab mount was not mirrored"
mirror_of "$DEV" a "$WORK/a.disk"
cmp "$WORK/a" "$WORK/a.disk" || die "mirror differs"
echo "PASS fstab"
