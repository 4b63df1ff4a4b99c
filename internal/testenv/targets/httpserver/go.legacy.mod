module example.com/httpserver

// go.mod asks for Go 1.22 (method and wildcard routes); toolchains before it build with
// this file instead (go build -modfile=go.legacy.mod).
go 1.20
