#!/bin/bash
# PID 1 of the test namespaces until it execs systemd. Runs with a private mount namespace:
# every mount below is invisible to the host.
set -e
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
exec 9<>"$SDTEST_CONSOLE"       # the host pty slave; becomes /dev/console below
# private /dev: otherwise /dev/log and friends would be created on the host
mount -t tmpfs -o mode=755,nosuid,size=4m tmpfs /dev
for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $n; mknod -m 666 /dev/"$1" c "$2" "$3"
done
mkdir /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t mqueue mqueue /dev/mqueue
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
touch /dev/console; mount --bind /proc/self/fd/9 /dev/console; exec 9>&-
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
[ -d /var/log/journal ] && mount -t tmpfs tmpfs /var/log/journal   # keep journald off the host disk
if [ "${SDTEST_PRIVATE_TMP:-1}" = 1 ]; then   # PrivateTmp= dirs would otherwise land on the host
  mount -t tmpfs -o mode=1777 tmpfs /tmp; mount -t tmpfs -o mode=1777 tmpfs /var/tmp
fi
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
