#!/bin/bash
# PID 1 of the test namespaces until it execs systemd. Runs with a private mount namespace:
# every mount below is invisible to the host.
#
# The root it gives systemd is the host's tree seen through overlays: every mounted file system
# (/, and /work, /home, ... when they are mounts of their own) is the lower layer of an overlay
# whose upper layer lives in a tmpfs of this namespace.  Whatever runs inside (apt and dpkg,
# MariaDB's data files, units in /etc, sdwatch's /var/lib/sdwatch) writes to that tmpfs, which
# vanishes with the namespace; two harnesses never see each other's writes.  Only the checkout
# ($SDTEST_REPO) is bound through read-write: test reports must reach the host.
set -e
exec 9<>"$SDTEST_CONSOLE"       # the host pty slave; becomes /dev/console below
O=$SDTEST_STATE/overlay
mount -t tmpfs -o mode=700 sdtest-upper "$O"
mkdir "$O/root"
n=0
# mount point and type of every mount, parents first (mountinfo escapes blanks as \040)
awk '{for (i = 7; $i != "-"; i++); print $5, $(i + 1)}' /proc/self/mountinfo |
  while read -r mp fstype; do
    mp=$(printf '%b' "$mp")
    case $mp in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run|/run/*|"$O"|"$O"/*) continue ;; esac
    case $fstype in
      proc|sysfs|cgroup|cgroup2|devpts|devtmpfs|mqueue|tracefs|debugfs|securityfs|pstore|bpf|\
      fusectl|configfs|hugetlbfs|binfmt_misc|autofs|nsfs|efivarfs|rpc_pipefs) continue ;;
    esac
    n=$((n + 1)); mkdir -p "$O/$n/upper" "$O/$n/work"
    [ -d "$O/root$mp" ] || continue        # a file bind mount, or hidden under another mount
    case $mp in *,*|*:*) ok=no ;; *) ok=yes ;; esac   # overlay options cannot carry these
    if [ $ok = yes ] && mount -t overlay sdtest -o \
         "lowerdir=$mp,upperdir=$O/$n/upper,workdir=$O/$n/work" "$O/root${mp%/}"; then
      continue
    fi
    mount --bind -o ro "$mp" "$O/root${mp%/}"   # not overlayable: visible, but read-only
  done
R=$O/root
mountpoint -q "$R" || { echo "sdtest: no overlay of /" >&2; exit 1; }
mount --bind "$SDTEST_REPO" "$R$SDTEST_REPO"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"      # umount below reads mountinfo
mount -t sysfs -o nosuid,nodev,noexec sysfs "$R/sys"
# a private /dev (systemd populates it); before pivot_root, while the console pty is reachable
mount -t tmpfs -o mode=755,nosuid,size=4m tmpfs "$R"/dev
for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $n; mknod -m 666 "$R"/dev/"$1" c "$2" "$3"
done
mkdir "$R"/dev/pts "$R"/dev/shm "$R"/dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R"/dev/pts
ln -s pts/ptmx "$R"/dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R"/dev/shm
mount -t mqueue mqueue "$R"/dev/mqueue
ln -s /proc/self/fd "$R"/dev/fd
ln -s /proc/self/fd/0 "$R"/dev/stdin; ln -s /proc/self/fd/1 "$R"/dev/stdout; ln -s /proc/self/fd/2 "$R"/dev/stderr
touch "$R"/dev/console; mount --bind /proc/self/fd/9 "$R"/dev/console; exec 9>&-
cd "$R"; pivot_root . .; umount -l .; cd /
if [ "${SDTEST_CGROUP:-hybrid}" = unified ]; then
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
else
  # our own cgroupfs view, rooted at the cgroup namespace: every v1 controller hierarchy
  # (co-mounted ones grouped as the host groups them), name=systemd and the unified tree
  mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
  awk 'NR>1 && $2>0 {print $2, $1}' /proc/cgroups | sort -n |
    awk '{a[$1]=a[$1] (a[$1]?",":"") $2} END{for(h in a) print a[h]}' |
    while read -r c; do
      mkdir /sys/fs/cgroup/"$c"; mount -t cgroup -o "$c" cgroup /sys/fs/cgroup/"$c"
    done
  mkdir /sys/fs/cgroup/systemd; mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
  mkdir /sys/fs/cgroup/unified; mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
fi
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
U=/run/systemd/system
mkdir -p /run/lock $U/sysinit.target.wants /run/systemd/system.conf.d
# Mask everything sysinit.target wants except journald: udev, sysctl, modules, binfmt,
# timesyncd, and above all systemd-tmpfiles-setup, whose 'D /tmp' rule would empty the
# host's /tmp.  Plus units that touch the host's disks or consoles.
for u in $(find /lib/systemd/system/sysinit.target.wants /etc/systemd/system/sysinit.target.wants \
             -mindepth 1 -printf '%f\n' 2>/dev/null) systemd-tmpfiles-setup.service \
         systemd-tmpfiles-clean.timer systemd-logind.service getty.target systemd-update-done.service \
         ldconfig.service systemd-hwdb-update.service systemd-journal-catalog-update.service \
         systemd-remount-fs.service systemd-fsck-root.service tmp.mount; do
  [ "$u" = systemd-journald.service ] || ln -sf /dev/null "$U/$u"
done
printf '%s\n' '[Unit]' DefaultDependencies=no Before=sysinit.target '[Service]' Type=oneshot \
  RemainAfterExit=yes 'ExecStart=/bin/systemd-tmpfiles --create --prefix=/run' \
  > $U/sdtest-tmpfiles.service
ln -s ../sdtest-tmpfiles.service $U/sysinit.target.wants/
printf '%s\n' '[Unit]' Requires=sysinit.target \
  'Wants=dbus.socket dbus.service systemd-journald.service' \
  'After=sysinit.target dbus.service' > $U/sdtest.target
printf '%s\n' '[Manager]' ShowStatus=no DefaultCPUAccounting=yes DefaultMemoryAccounting=yes \
  DefaultTasksAccounting=yes DefaultTimeoutStopSec=15s > /run/systemd/system.conf.d/sdtest.conf
# container mode: systemd-shutdown then skips unmounting, remounting / read-only and
# detaching loop/DM devices, all of which would hit the shared host filesystem
export container=sdtest
exec /lib/systemd/systemd --system --unit=sdtest.target --log-target=console \
     --log-level="${SDTEST_LOGLEVEL:-info}" --log-time=yes
