#!/bin/sh
# Prints the package changelog, in the chglog YAML nfpm turns into the
# Debian changelog.Debian.gz and the RPM %changelog, for version-release $1:
# one entry for the commit it was built from (the git history is the real
# changelog), dated by SOURCE_DATE_EPOCH or the commit, so builds repeat.
set -eu
when=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
cat <<END
- semver: "$1"
  date: $(date -u -d "@$when" +%Y-%m-%dT%H:%M:%SZ)
  packager: l2lb maintainers <maintainers@l2lb.dev>
  deb:
    urgency: medium
    distributions: [unstable]
  changes:
    - note: Built from commit $(git rev-parse --short=12 HEAD); the git history has the changes.
END
