package wire

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"golang.org/x/net/http2/hpack"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// The socket programs' Huffman table (bpf/include/hpack.h) is RFC 7541's: each
// printable byte's code as x/net's encoder writes it. The code of a byte s is read
// from the encoding of s and then '0' (whose code is five zero bits): the bits before
// those five zeros, with only the padding's ones after them.
func TestHuffmanTable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "bpf", "include", "hpack.h"))
	if err != nil {
		t.Fatal(err)
	}
	entries := regexp.MustCompile(`\{(0x[0-9a-f]+), (\d+)\}`).FindAllStringSubmatch(string(b), -1)
	if len(entries) != 0x7e-0x20+1 {
		t.Fatalf("%d entries in hpack.h, want %d", len(entries), 0x7e-0x20+1)
	}
	bit := func(b []byte, i int) uint32 { return uint32(b[i/8]>>(7-i%8)) & 1 }
	for i, e := range entries {
		s := byte(0x20 + i)
		enc := hpack.AppendHuffmanString(nil, string([]byte{s, '0'}))
		var code uint32
		n := -1
		for l := 5; l <= 30 && n < 0; l++ {
			if (l+5+7)/8 != len(enc) {
				continue
			}
			ok := true
			for j := l; j < len(enc)*8; j++ {
				ok = ok && bit(enc, j) == map[bool]uint32{true: 0, false: 1}[j < l+5]
			}
			if ok {
				n = l
				for j := 0; j < l; j++ {
					code = code<<1 | bit(enc, j)
				}
			}
		}
		gotCode, _ := strconv.ParseUint(e[1], 0, 32)
		gotLen, _ := strconv.Atoi(e[2])
		if n < 0 || uint32(gotCode) != code || gotLen != n {
			t.Errorf("%q: hpack.h has %#x/%d, RFC 7541 %#x/%d", s, gotCode, gotLen, code, n)
		}
	}
}
