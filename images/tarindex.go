package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"syscall"
)

// Archives (docker-archive:, oci-archive:) are read in place: their headers are
// indexed, and a file in them is a section of the archive, never extracted. So an
// archive costs no disk, and an entry whose data is not where its header says (a
// sparse file, which tar expands into its holes) is refused rather than expanded.

// archiveFile is an open archive and where each of its regular files lies.
type archiveFile struct {
	ctx     context.Context
	lim     Limits
	f       *os.File
	path    string
	entries map[string]archiveEntry
}

type archiveEntry struct {
	offset, size int64
}

// sparse says whether a tar header is a sparse file's, in GNU's or PAX's form.
func sparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// openArchive indexes the tar archive at p: kind names it in errors ("a docker
// archive", "an OCI archive").
func openArchive(ctx context.Context, p, kind string, lim Limits) (*archiveFile, error) {
	// O_NONBLOCK: a FIFO in the archive's place must not hang the open; a regular
	// file, which indexArchive checks for, ignores it.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	a, err := indexArchive(ctx, f, p, kind, lim)
	if err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

func indexArchive(ctx context.Context, f *os.File, p, kind string, lim Limits) (*archiveFile, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: %s must be one", p, kind)
	}
	a := &archiveFile{ctx: ctx, lim: lim, f: f, path: p, entries: map[string]archiveEntry{}}
	links := map[string]string{}
	// tar.Reader skips entries' data by seeking when it reads an *os.File: indexing a
	// 1 GB archive reads its headers only.
	counter := &offsetReader{r: f}
	tr := tar.NewReader(counter)
	for n := 1; ; n++ {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not %s: %w", p, kind, err)
		}
		if n > lim.ArchiveEntries {
			return nil, overLimit("%s: more than %d entries, the limit for %s; %s", p, lim.ArchiveEntries, kind, malformedHint)
		}
		if sparse(h) {
			return nil, fmt.Errorf("%s: entry %q is a sparse file: refused (%s holds no sparse files; its holes would be read as data); make the archive again without --sparse", p, h.Name, kind)
		}
		name := path.Clean(strings.TrimLeft(h.Name, "/"))
		switch h.Typeflag {
		case tar.TypeReg:
			if h.Size > lim.LayerSize {
				return nil, overLimit("%s: entry %q is %d bytes, over the limit of %s (--max-layer-size); %s", p, h.Name, h.Size, FormatSize(lim.LayerSize), layerLimitHint)
			}
			if counter.pos+h.Size > st.Size() {
				return nil, fmt.Errorf("%s: entry %q ends past the end of the file: the archive is truncated", p, h.Name)
			}
			a.entries[name] = archiveEntry{offset: counter.pos, size: h.Size}
		case tar.TypeSymlink:
			links[name] = path.Clean(path.Join(path.Dir(name), h.Linkname))
		case tar.TypeLink:
			links[name] = path.Clean(strings.TrimLeft(h.Linkname, "/"))
		}
	}
	// Older docker saves link repeated layers to one file.
	for from, to := range links {
		if e, ok := a.entries[to]; ok {
			a.entries[from] = e
		}
	}
	return a, nil
}

// offsetReader tells where in the file the tar reader is, seeking or reading.
type offsetReader struct {
	r   *os.File
	pos int64
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.pos += int64(n)
	return n, err
}

func (o *offsetReader) Seek(offset int64, whence int) (int64, error) {
	n, err := o.r.Seek(offset, whence)
	if err == nil {
		o.pos = n
	}
	return n, err
}

// has says whether the archive holds the file name.
func (a *archiveFile) has(name string) bool {
	_, ok := a.entries[path.Clean(name)]
	return ok
}

// open reads the file name in place; reads stop once the wrap is interrupted.
func (a *archiveFile) open(name string) (io.ReadCloser, int64, error) {
	e, ok := a.entries[path.Clean(name)]
	if !ok {
		return nil, 0, fmt.Errorf("%s: no %s in the archive", a.path, name)
	}
	return io.NopCloser(ctxReader{a.ctx, io.NewSectionReader(a.f, e.offset, e.size)}), e.size, nil
}

// readAll reads the file name whole, if it is at most limit bytes.
func (a *archiveFile) readAll(name string, limit int64) ([]byte, error) {
	r, size, err := a.open(name)
	if err != nil {
		return nil, err
	}
	if size > limit {
		return nil, overLimit("%s: %s is %d bytes, over the limit of %s; %s", a.path, name, size, FormatSize(limit), malformedHint)
	}
	return io.ReadAll(r)
}

func (a *archiveFile) describe(name string) string { return a.path + ": " + name }

func (a *archiveFile) Close() error { return a.f.Close() }
