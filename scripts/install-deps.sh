#!/bin/sh
# Installs the tools the tests and benchmarks drive (Debian packages), if any is missing:
# dig, kdig, lbcd, dnsperf, curl, unshare and ip (network namespaces), nft (rules inside those
# namespaces), unbound (the caching resolver of tests/it/resolver.rs and
# benches/failover-resolver.sh), and headless Chromium for the status-page test.
# Daemons in these packages (lbcd, unbound) must never auto-start: policy-rc.d is set to refuse
# first. unbound is only ever run by those two, in a private network namespace of their own.
set -eu

need=""
have() { command -v "$1" >/dev/null 2>&1; }
have dig      || need="$need bind9-dnsutils"
have kdig     || need="$need knot-dnsutils"
have dnsperf  || need="$need dnsperf"
[ -x /usr/sbin/lbcd ] || need="$need lbcd"
[ -x /usr/sbin/unbound ] || need="$need unbound"
have curl     || need="$need curl"
have python3  || need="$need python3"
# The unit-file test runs `systemd-analyze verify` (the package is installed, never started).
have systemd-analyze || need="$need systemd"
# The MTU and AF_XDP tests run lbns and dig in fresh network namespaces (unshare -n, ip link;
# nsenter for the client's namespace, setpriv to run lbns unprivileged).
{ have unshare && have nsenter && have setpriv; } || need="$need util-linux"
[ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || have ip || need="$need iproute2"
# The cluster tests and benchmark cut one instance's probes to one backend with an nftables
# rule inside their private network namespace (one-sided loss). The package ships a service
# that is never enabled or started here: it would load /etc/nftables.conf on the host.
[ -x /usr/sbin/nft ] || [ -x /sbin/nft ] || have nft || need="$need nftables"
# The status-page browser test renders it in headless Chromium; a font so text is drawn.
have chromium || need="$need chromium"
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need="$need fonts-dejavu-core"

[ -z "$need" ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Debian's invoke-rc.d asks policy-rc.d before starting a service; 101 means "not allowed".
rc=0
[ -x /usr/sbin/policy-rc.d ] && { /usr/sbin/policy-rc.d >/dev/null 2>&1 || rc=$?; }
if [ "$rc" -ne 101 ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
fi
echo "install-deps: installing$need" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
# lbcd and unbound ship services; make sure nothing of them runs even if a policy was ignored.
if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now lbcd.service lbcd.socket unbound.service \
        unbound-resolvconf.service >/dev/null 2>&1 || true
fi
