//go:build !unix

package bench

import (
	"errors"
	"time"
)

func raiseFileLimit() (uint64, error) {
	return 0, errors.New("bench: the open-files limit is only read on Unix")
}

func selfCPU() time.Duration { return 0 }
