#!/bin/sh
# Prints the package version for the commit checked out, from git describe,
# in a form dpkg and rpm both accept and order the same way:
#   tag v1.2.3, exactly           -> 1.2.3
#   tag v1.2.0-rc.1               -> 1.2.0~rc.1   (~ sorts before 1.2.0)
#   4 commits after v1.2.3        -> 1.2.3+git4.1a2b3c4d5e6f
#   no tag yet, 57 commits        -> 0.0.0~git57.1a2b3c4d5e6f (before any release)
# and ".dirty" appended when the work tree has uncommitted changes.
set -eu

if desc=$(git describe --tags --match 'v[0-9]*' --long --abbrev=12 2>/dev/null); then
	hash=${desc##*-g}
	rest=${desc%-g*}
	n=${rest##*-}
	tag=${rest%-*}
	v=$(echo "${tag#v}" | tr - '~')
	if [ "$n" != 0 ]; then
		v="$v+git$n.$hash"
	fi
else
	v="0.0.0~git$(git rev-list --count HEAD).$(git rev-parse --short=12 HEAD)"
fi
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	v="$v.dirty"
fi
echo "$v"
