//go:build !linux

package cache

import "os"

func startWriteback(*os.File, int64, int64) {}
