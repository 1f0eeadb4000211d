module fleet-gate

// Debian trixie's golang-go is Go 1.24: the image builds with it.
go 1.24
