# Written by reprotrace (`export docker`): installs the system packages the
# audited run used, at the versions it used.
#
# Arguments: NAME=VERSION for each package, and NAME alone for a tool the
# Dockerfile needs that the run did not use (apt picks its version).
#
# Debian's archive keeps only the latest version of each package of a
# release: a version superseded since the audit (a point release, a security
# update) cannot be installed from it. By default the build then stops,
# naming those packages. With `--build-arg REPROTRACE_SUPERSEDED=current` it
# installs the archive's current versions of those packages instead, says so,
# and lists them in /reprotrace/superseded.txt ("NAME recorded VERSION
# installed VERSION"); the other packages stay at their recorded versions.
# snapshot.debian.org keeps every version, for a build that must have them.

# -f: the package lists below are split on blanks, never globbed (names and
# versions were checked against Debian's grammars: no blanks, no quotes).
set -euf
# No questions: nobody answers them in a build.
export DEBIAN_FRONTEND=noninteractive
apt-get update
recorded=""
superseded=""
for package in "$@"; do
    # apt-cache prints no record on stdout for a version the lists lack.
    if apt-cache show "$package" 2>/dev/null | grep -q '^Version:'; then
        recorded="$recorded $package"
    else
        superseded="$superseded $package"
    fi
done
current=""
if [ -n "$superseded" ]; then
    echo "reprotrace: the archive no longer has these versions the run used:$superseded" >&2
    if [ "${REPROTRACE_SUPERSEDED:-fail}" != current ]; then
        echo "reprotrace: stopping; build with --build-arg REPROTRACE_SUPERSEDED=current to install the archive's current versions of these packages instead, or add an archive that has them (snapshot.debian.org)" >&2
        exit 100
    fi
    for package in $superseded; do
        current="$current ${package%%=*}"
    done
    echo "reprotrace: REPROTRACE_SUPERSEDED=current: installing the archive's versions of:$current" >&2
fi
# --allow-downgrades: the base image may hold a newer version than the run used.
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends --allow-downgrades $recorded $current
mkdir -p /reprotrace
for package in $superseded; do
    name="${package%%=*}"
    echo "$name recorded ${package#*=} installed $(dpkg-query -W -f='${Version}' "$name")"
done > /reprotrace/superseded.txt
rm -rf /var/lib/apt/lists/*
