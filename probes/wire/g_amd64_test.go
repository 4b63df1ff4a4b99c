package wire

// currentG returns the calling goroutine's g (assembly: g_amd64_test.s).
func currentG() uintptr
