// Package packaging holds no code: packaging/ is l2lb's nfpm configuration,
// maintainer scripts, man pages and lint overrides, and this package's tests
// build the .deb and .rpm with `make package` and check them for real —
// contents, modes, conffiles and scripts with dpkg-deb and rpm, lintian and
// rpmlint, and an install, upgrade and purge of the .deb on this machine
// (run as root; the tools come from test/deps.sh).
package packaging
