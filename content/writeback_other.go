//go:build !linux

package content

import "os"

func startWriteback(*os.File, int64, int64) {}
