package testenv

import (
	"archive/tar"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TarFile reads the file name ("./" prefix or not) out of a tar archive.
func TarFile(t testing.TB, archive, name string) []byte {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no %s (%v)", archive, name, err)
		}
		if strings.TrimPrefix(h.Name, "./") == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// ELF machines FakeELF makes headers for.
const (
	ELFMachineAMD64 = 62
	ELFMachineARM64 = 183
)

// FakeELF is the smallest file debug/elf reads as an executable of machine (64-bit,
// little-endian, no sections), followed by tag: a stand-in for a launcher binary.
func FakeELF(machine uint16, tag string) []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(h[16:], 2) // ET_EXEC
	binary.LittleEndian.PutUint16(h[18:], machine)
	binary.LittleEndian.PutUint32(h[20:], 1)
	binary.LittleEndian.PutUint16(h[52:], 64)
	return append(h, tag...)
}

// ImageBinaries puts what scripts/image.sh takes into dir for each architecture:
// launch-linux-ARCH and launch-runtime-linux-ARCH. For this machine's architecture they
// are launch (the binary under test) and the launch-runtime next to it, if there is
// one; for others, static builds.
func ImageBinaries(dir, launch string, arches ...string) error {
	for _, arch := range arches {
		for _, bin := range []string{"launch", "launch-runtime"} {
			src := launch
			if bin != "launch" {
				src = filepath.Join(filepath.Dir(launch), bin)
			}
			if _, err := os.Stat(src); err != nil || arch != runtime.GOARCH {
				if src, err = BuildProgram("./cmd/"+bin, "CGO_ENABLED=0", "GOARCH="+arch); err != nil {
					return err
				}
			}
			data, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, bin+"-linux-"+arch), data, 0o755); err != nil {
				return err
			}
		}
	}
	return nil
}
