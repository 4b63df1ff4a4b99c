package offsets

import (
	"encoding/binary"
	"slices"
	"testing"
)

// Direct calls to the targets are found, at their own offsets; calls elsewhere,
// indirect calls and other branches are not.
func TestCallSites(t *testing.T) {
	const base = 0x401000
	rel32 := func(op byte, at, to int) []byte {
		b := []byte{op, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(b[1:], uint32(int32(to-(at+5))))
		return b
	}
	var code []byte
	code = append(code, 0x90)                             // NOP
	code = append(code, rel32(0xe8, len(code), 0x100)...) // CALL target (at 1)
	code = append(code, rel32(0xe8, len(code), 0x200)...) // CALL elsewhere
	code = append(code, 0xff, 0xd2)                       // CALL DX
	code = append(code, rel32(0xe9, len(code), 0x100)...) // JMP target: a tail call, not probed
	at := len(code)
	code = append(code, rel32(0xe8, len(code), -0x40)...) // CALL target2, backwards
	code = append(code, 0xcc, 0xcc)                       // padding
	got, err := callSites("amd64", code, base, map[uint64]bool{base + 0x100: true, base - 0x40: true})
	if err != nil || !slices.Equal(got, []uint64{1, uint64(at)}) {
		t.Errorf("amd64: %v %v, want [1 %d]", got, err, at)
	}

	bl := func(at, to int) []byte {
		b := make([]byte, 4)
		binary.LittleEndian.PutUint32(b, 0x94000000|uint32((to-at)/4)&0x3ffffff)
		return b
	}
	var arm []byte
	arm = append(arm, 0x1f, 0x20, 0x03, 0xd5)  // NOP
	arm = append(arm, bl(len(arm), 0x100)...)  // BL target (at 4)
	arm = append(arm, bl(len(arm), 0x104)...)  // BL elsewhere
	arm = append(arm, 0x40, 0x00, 0x3f, 0xd6)  // BLR X2
	arm = append(arm, 0x3d, 0x00, 0x00, 0x14)  // B: not a call
	arm = append(arm, bl(len(arm), -0x800)...) // BL target2, backwards (at 20)
	got, err = callSites("arm64", arm, base, map[uint64]bool{base + 0x100: true, base - 0x800: true})
	if err != nil || !slices.Equal(got, []uint64{4, 20}) {
		t.Errorf("arm64: %v %v, want [4 20]", got, err)
	}
	if _, err := callSites("amd64", []byte{0x90, 0x06}, base, nil); err == nil {
		t.Error("undecodable code: no error")
	}
}
