package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The last good copy: a daemon that starts while its file is broken (an
// edit half done when a package upgrade or a crash restarts it) runs on the
// configuration it last accepted, as a reload would, rather than leave the
// node without l2lbd. It lives in the state directory (systemd's
// StateDirectory=), one file replaced atomically.

// LastGoodPath is the last good copy in the state directory dir.
func LastGoodPath(dir string) string { return filepath.Join(dir, "last-good.yaml") }

// SaveLastGood makes data, a file's content that Parse accepted, the last
// good copy in dir, unless it already is.
func SaveLastGood(dir string, data []byte) error {
	path := LastGoodPath(dir)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	// One daemon per state directory: a fixed temporary name, so that a
	// crash between the write and the rename leaves nothing to pile up.
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save last good config: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save last good config: %w", err)
	}
	return nil
}

// LoadAtStart loads the file at path for a daemon that starts, with dir its
// state directory ("" for none). A bad file gives way to the last good copy
// in dir when there is one that still parses: c and data are then the
// copy's, and refused says what is wrong with the file. err is set only
// when neither serves: the file's error, and the copy's unless there is
// none.
func LoadAtStart(path, dir, hostname string) (c *Config, data []byte, refused, err error) {
	c, data, err = Load(path, hostname)
	if err == nil {
		return c, data, nil, nil
	}
	if dir == "" {
		return nil, nil, nil, err
	}
	good, goodData, goodErr := Load(LastGoodPath(dir), hostname)
	switch {
	case goodErr == nil:
		return good, goodData, err, nil
	case errors.Is(goodErr, fs.ErrNotExist):
		return nil, nil, nil, err
	}
	return nil, nil, nil, errors.Join(err, fmt.Errorf("the last good copy cannot serve either: %w", goodErr))
}
