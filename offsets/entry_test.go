package offsets

import "testing"

func TestStackCheckBranch(t *testing.T) {
	jls := []byte{0x0f, 0x86, 0x10, 0x00, 0x00, 0x00} // JLS (JBE) rel32
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	cases := []struct {
		name string
		code []byte
		want uint64
	}{
		{"small frame: CMPQ SP, 16(R14); JLS", cat([]byte{0x49, 0x3b, 0x66, 0x10}, jls), 4},
		{"frame to 4 KiB: LEAQ -n(SP), R12; CMPQ R12, 16(R14); JLS",
			cat([]byte{0x4c, 0x8d, 0x64, 0x24, 0x90}, []byte{0x4d, 0x3b, 0x66, 0x10}, jls), 9},
		{"larger frame: MOVQ SP, R12; SUBQ $n, R12; JCS",
			cat([]byte{0x49, 0x89, 0xe4}, []byte{0x49, 0x81, 0xec, 0x00, 0x00, 0x01, 0x00}, []byte{0x0f, 0x82, 0x10, 0x00, 0x00, 0x00}), 10},
		{"no stack check: PUSHQ BP", []byte{0x55, 0x48, 0x89, 0xe5, 0x0f, 0x86, 0, 0, 0, 0}, 0},
		{"an argument register written before the branch: MOVQ 8(SP), AX",
			cat([]byte{0x48, 0x8b, 0x44, 0x24, 0x08}, []byte{0x49, 0x3b, 0x66, 0x10}, jls), 0},
		{"SP written before the branch: SUBQ $16, SP", cat([]byte{0x48, 0x83, 0xec, 0x10}, jls), 0},
		{"undecodable", []byte{0x0f, 0xff}, 0},
		{"empty", nil, 0},
	}
	for _, c := range cases {
		if got := stackCheckBranch(c.code); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// The compiler's pointer-receiver wrapper of a value method: PUSHQ BP; MOVQ SP, BP;
// TESTQ AX, AX; JE - the nil check's branch; nothing else is taken for one.
func TestFramedBranch(t *testing.T) {
	for _, c := range []struct {
		name string
		code []byte
		want uint64
	}{
		{"wrapper: PUSHQ BP; MOVQ SP, BP; TESTQ AX, AX; JE", []byte{0x55, 0x48, 0x89, 0xe5, 0x48, 0x85, 0xc0, 0x74, 0x02, 0x5d, 0xc3}, 7},
		{"no MOVQ SP, BP", []byte{0x55, 0x48, 0x85, 0xc0, 0x74, 0x02}, 0},
		{"a register written: PUSHQ BP; MOVQ SP, BP; MOVQ 8(AX), AX; JE",
			[]byte{0x55, 0x48, 0x89, 0xe5, 0x48, 0x8b, 0x40, 0x08, 0x74, 0x02}, 0},
		{"SP moved: PUSHQ BP; MOVQ SP, BP; SUBQ $16, SP; JE", []byte{0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10, 0x74, 0x02}, 0},
		{"a stack check first", []byte{0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x10, 0, 0, 0}, 0},
		{"empty", nil, 0},
	} {
		if got := framedBranch(c.code); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
