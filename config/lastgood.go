package config

import (
	"bytes"
	"fmt"
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
	tmp, err := os.CreateTemp(dir, ".last-good-*.yaml")
	if err != nil {
		return fmt.Errorf("save last good config: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save last good config: %w", err)
	}
	return nil
}

// LoadAtStart loads the file at path for a daemon that starts, with dir its
// state directory ("" for none). A bad file gives way to the last good copy
// in dir when there is one that still parses: c and data are then the
// copy's, and refused says what is wrong with the file. err is set only
// when neither serves; it is the file's own error.
func LoadAtStart(path, dir, hostname string) (c *Config, data []byte, refused, err error) {
	c, data, err = Load(path, hostname)
	if err == nil {
		return c, data, nil, nil
	}
	if dir == "" {
		return nil, nil, nil, err
	}
	good, goodData, goodErr := Load(LastGoodPath(dir), hostname)
	if goodErr != nil {
		return nil, nil, nil, err
	}
	return good, goodData, err, nil
}
