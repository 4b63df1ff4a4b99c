package images

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// A layer is named twice: by the digest of its stored (usually compressed) bytes, in
// the manifest, and by the digest of its uncompressed tar, the diff ID, in the config.
// A runtime unpacks the tar; a registry or a layout checks only the stored digest. An
// image whose diff ID does not match its layer is either corrupt or made to look like
// another, so every layer that passes through a wrap is checked against both.

// layerCheck says what a layer's bytes must be.
type layerCheck struct {
	what    string  // the layer, for errors: "layer sha256:…"
	digest  v1.Hash // of the stored bytes; zero: not checked
	size    int64   // of the stored bytes; -1: not checked
	diffID  v1.Hash // of the uncompressed bytes; zero: not checked
	maxSize int64   // bound on the uncompressed bytes
}

// errAbandoned ends the decompressing side of a reader closed before its end.
var errAbandoned = errors.New("the layer was closed before its end")

// checkedReader reads a layer's stored bytes and, at their end, fails unless they
// have the digest and size wanted and uncompress to the diff ID wanted. Decompression
// runs beside the reads, in step with them, on a pipe.
type checkedReader struct {
	ctx   context.Context
	r     io.ReadCloser
	c     layerCheck
	h     hash.Hash
	n     int64
	pw    *io.PipeWriter
	done  chan error // the decompressing side's verdict
	ended bool
	err   error // once failed, always failed
}

func newCheckedReader(ctx context.Context, r io.ReadCloser, c layerCheck) *checkedReader {
	cr := &checkedReader{ctx: ctx, r: r, c: c, h: sha256.New()}
	if c.diffID != (v1.Hash{}) {
		pr, pw := io.Pipe()
		cr.pw, cr.done = pw, make(chan error, 1)
		go func() {
			err := uncompressedDigest(pr, c)
			pr.CloseWithError(err)
			cr.done <- err
		}()
	}
	return cr
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.ctx.Err() != nil {
		return 0, c.fail(context.Cause(c.ctx))
	}
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		if c.c.size >= 0 && c.n > c.c.size {
			return 0, c.fail(fmt.Errorf("%s: more than the %d bytes its manifest gives: the image is corrupt or tampered with", c.c.what, c.c.size))
		}
		c.h.Write(p[:n])
		if c.pw != nil {
			if _, werr := c.pw.Write(p[:n]); werr != nil {
				c.pw = nil
				derr := <-c.done
				if derr == nil {
					derr = fmt.Errorf("%s: data after the end of its compressed stream: the image is corrupt", c.c.what)
				}
				return 0, c.fail(derr)
			}
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		if ferr := c.finish(); ferr != nil {
			return 0, c.fail(ferr)
		}
		return n, io.EOF
	case err != nil:
		return n, c.fail(fmt.Errorf("%s: %w", c.c.what, err))
	}
	return n, nil
}

// finish checks what the whole layer must be, once it has been read.
func (c *checkedReader) finish() error {
	c.ended = true
	if c.c.size >= 0 && c.n != c.c.size {
		return fmt.Errorf("%s: %d bytes, its manifest gives %d: the image is corrupt or truncated", c.c.what, c.n, c.c.size)
	}
	if c.c.digest != (v1.Hash{}) {
		if got := hex.EncodeToString(c.h.Sum(nil)); c.c.digest.Algorithm != "sha256" || got != c.c.digest.Hex {
			return fmt.Errorf("%s: its bytes have the digest sha256:%s: the image is corrupt or tampered with; pull or build it again", c.c.what, got)
		}
	}
	if c.pw != nil {
		c.pw.Close()
		c.pw = nil
		return <-c.done
	}
	return nil
}

func (c *checkedReader) fail(err error) error {
	c.err = err
	if c.pw != nil {
		c.pw.CloseWithError(errAbandoned)
		c.pw = nil
		<-c.done
	}
	return err
}

func (c *checkedReader) Close() error {
	if c.pw != nil {
		c.pw.CloseWithError(errAbandoned)
		c.pw = nil
		<-c.done
	}
	return c.r.Close()
}

// Compression formats, told by their first bytes as runtimes tell them.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// zstdMaxWindow bounds the memory a zstd layer may ask of its decoder; zstd's own
// --long mode uses 128 MiB at most.
const zstdMaxWindow = 128 << 20

// uncompressedDigest reads a layer's stored bytes from r, uncompresses them (gzip,
// zstd, or none: a plain tar) and checks their digest against c.diffID and their size
// against c.maxSize.
func uncompressedDigest(r io.Reader, c layerCheck) error {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	var u io.Reader = br
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: not valid gzip: %w: the image is corrupt", c.what, err)
		}
		defer zr.Close()
		u = zr
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return fmt.Errorf("%s: not valid zstd: %w: the image is corrupt", c.what, err)
		}
		defer zr.Close()
		u = zr
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(u, c.maxSize+1))
	if errors.Is(err, errAbandoned) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%s: uncompressing it: %w: the image is corrupt", c.what, err)
	}
	if n > c.maxSize {
		return overLimit("%s is over %s uncompressed, the limit (--max-layer-size); %s", c.what, FormatSize(c.maxSize), layerLimitHint)
	}
	// What follows the compressed stream would be unpacked by no one: refuse it
	// rather than pass it on.
	if rest, err := io.Copy(io.Discard, br); err != nil {
		return err
	} else if rest > 0 {
		return fmt.Errorf("%s: %d bytes after the end of its compressed stream: the image is corrupt", c.what, rest)
	}
	if got := hex.EncodeToString(h.Sum(nil)); c.diffID.Algorithm != "sha256" || got != c.diffID.Hex {
		return fmt.Errorf("%s uncompresses to sha256:%s, not to the diff ID its image config gives (%s): the image is corrupt or tampered with; pull or build it again", c.what, got, c.diffID)
	}
	return nil
}

// uncompressedReader checks a layer's uncompressed bytes as they are read: the diff
// ID at the end, the size limit and the context all along.
type uncompressedReader struct {
	ctx    context.Context
	r      io.ReadCloser
	what   string
	diffID v1.Hash
	max    int64
	h      hash.Hash
	n      int64
}

func newUncompressedReader(ctx context.Context, r io.ReadCloser, what string, diffID v1.Hash, max int64) *uncompressedReader {
	return &uncompressedReader{ctx: ctx, r: r, what: what, diffID: diffID, max: max, h: sha256.New()}
}

func (u *uncompressedReader) Read(p []byte) (int, error) {
	if u.ctx.Err() != nil {
		return 0, context.Cause(u.ctx)
	}
	n, err := u.r.Read(p)
	u.n += int64(n)
	u.h.Write(p[:n])
	if u.n > u.max {
		return 0, overLimit("%s is over %s uncompressed, the limit (--max-layer-size); %s", u.what, FormatSize(u.max), layerLimitHint)
	}
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(u.h.Sum(nil)); u.diffID.Algorithm != "sha256" || got != u.diffID.Hex {
			return 0, fmt.Errorf("%s uncompresses to sha256:%s, not to the diff ID its image config gives (%s): the image is corrupt or tampered with; pull or build it again", u.what, got, u.diffID)
		}
	}
	return n, err
}

func (u *uncompressedReader) Close() error { return u.r.Close() }
