package images

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// launch wrap runs as root and writes where it is told, often into directories that
// others can write to (/tmp, a shared volume). So below the destination's own path,
// which the operator chose, nothing is opened by a name that could be a symlink
// planted by someone else: every file is opened relative to an open directory, with
// O_NOFOLLOW, and new files with O_EXCL under random names.

// dirHandle is an open directory; names are looked up in it one component at a time.
type dirHandle struct {
	f    *os.File
	path string // for errors
}

// openDir opens the directory at path, following path as given.
func openDir(path string) (*dirHandle, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &dirHandle{f: os.NewFile(uintptr(fd), path), path: path}, nil
}

func (d *dirHandle) Close() error { return d.f.Close() }

func (d *dirHandle) fd() int { return int(d.f.Fd()) }

func (d *dirHandle) join(name string) string { return filepath.Join(d.path, name) }

// symlinkRefused is the error for a name that is a symlink where a wrap writes or reads.
func symlinkRefused(path string) error {
	return fmt.Errorf("%s is a symlink: refused (a layout's files and directories must be its own; replace it with the directory or file itself)", path)
}

// subdir opens the directory name in d without following a symlink, making it first
// if create is set and it is absent. made says whether this call made it.
func (d *dirHandle) subdir(name string, create bool) (sub *dirHandle, made bool, err error) {
	if create {
		err := unix.Mkdirat(d.fd(), name, 0o755)
		switch {
		case err == nil:
			made = true
		case !errors.Is(err, unix.EEXIST):
			return nil, false, &os.PathError{Op: "mkdir", Path: d.join(name), Err: err}
		}
	}
	fd, err := unix.Openat(d.fd(), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) && d.isSymlink(name) {
			return nil, false, symlinkRefused(d.join(name))
		}
		return nil, false, &os.PathError{Op: "open", Path: d.join(name), Err: err}
	}
	return &dirHandle{f: os.NewFile(uintptr(fd), d.join(name)), path: d.join(name)}, made, nil
}

func (d *dirHandle) isSymlink(name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(d.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

// lstat describes name in d itself, a symlink as a symlink; ok is false when absent.
func (d *dirHandle) lstat(name string) (st unix.Stat_t, ok bool, err error) {
	err = unix.Fstatat(d.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	if err != nil {
		return st, false, &os.PathError{Op: "lstat", Path: d.join(name), Err: err}
	}
	return st, true, nil
}

// open opens the regular file name in d for reading, refusing a symlink.
func (d *dirHandle) open(name string) (*os.File, error) {
	fd, err := unix.Openat(d.fd(), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, symlinkRefused(d.join(name))
		}
		return nil, &os.PathError{Op: "open", Path: d.join(name), Err: err}
	}
	f := os.NewFile(uintptr(fd), d.join(name))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file: refused", d.join(name))
	}
	// O_NONBLOCK kept a FIFO from blocking the open; a regular file ignores it, but
	// clear it anyway.
	unix.SetNonblock(fd, false)
	return f, nil
}

// tempName is a name no one can guess: base with random hex, hidden.
func tempName(base string) string {
	var b [8]byte
	rand.Read(b[:])
	return "." + base + ".launch-wrap-" + hex.EncodeToString(b[:]) + ".tmp"
}

// createTemp makes a new file in d under a random name, exclusively and without
// following a symlink: what it writes goes to a file only it made.
func (d *dirHandle) createTemp(base string) (*os.File, string, error) {
	for range 10 {
		name := tempName(base)
		fd, err := unix.Openat(d.fd(), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, "", &os.PathError{Op: "create", Path: d.join(name), Err: err}
		}
		return os.NewFile(uintptr(fd), d.join(name)), name, nil
	}
	return nil, "", fmt.Errorf("%s: could not make a temporary file of a new name", d.path)
}

// mkdirTemp makes a new directory in d under a random name, for d's eyes only until
// it is renamed.
func (d *dirHandle) mkdirTemp(base string) (string, error) {
	for range 10 {
		name := tempName(base)
		err := unix.Mkdirat(d.fd(), name, 0o700)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", &os.PathError{Op: "mkdir", Path: d.join(name), Err: err}
		}
		return name, nil
	}
	return "", fmt.Errorf("%s: could not make a temporary directory of a new name", d.path)
}

// rename moves from to to within d; to, if it exists, is replaced, never followed.
func (d *dirHandle) rename(from, to string) error {
	if err := unix.Renameat(d.fd(), from, d.fd(), to); err != nil {
		return &os.LinkError{Op: "rename", Old: d.join(from), New: d.join(to), Err: err}
	}
	return nil
}

// remove unlinks the file name in d (a symlink itself, never its target).
func (d *dirHandle) remove(name string) {
	unix.Unlinkat(d.fd(), name, 0)
}

// removeAll removes the directory name in d and everything in it, following no
// symlink.
func (d *dirHandle) removeAll(name string) {
	sub, _, err := d.subdir(name, false)
	if err != nil {
		d.remove(name)
		return
	}
	names, _ := sub.f.Readdirnames(-1)
	for _, n := range names {
		if st, ok, _ := sub.lstat(n); ok && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			sub.removeAll(n)
			continue
		}
		sub.remove(n)
	}
	sub.Close()
	unix.Unlinkat(d.fd(), name, unix.AT_REMOVEDIR)
}

// sameFile says whether name in d is the file f (after a rename: no one swapped it).
func (d *dirHandle) sameFile(name string, f *os.File) bool {
	st, ok, err := d.lstat(name)
	var mine unix.Stat_t
	if !ok || err != nil || unix.Fstat(int(f.Fd()), &mine) != nil {
		return false
	}
	return st.Dev == mine.Dev && st.Ino == mine.Ino
}

// ctxWriter fails a write once ctx is done: a long copy stops when the wrap is
// interrupted.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.w.Write(p)
}

// ctxReader fails a read once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

// ctxReadCloser is a ctxReader that closes.
type ctxReadCloser struct {
	ctxReader
	c io.Closer
}

func (c ctxReadCloser) Close() error { return c.c.Close() }

func withContext(ctx context.Context, rc io.ReadCloser) io.ReadCloser {
	return ctxReadCloser{ctxReader{ctx, rc}, rc}
}
