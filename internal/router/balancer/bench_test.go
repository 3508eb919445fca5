package balancer

import (
	"strconv"
	"testing"
)

func BenchmarkPick(b *testing.B) {
	for _, p := range policies {
		for _, n := range []int{3, 50} {
			b.Run(string(p)+"/"+strconv.Itoa(n), func(b *testing.B) {
				ins, _ := instances(n)
				ins[0].Tags = map[string]string{"track": "canary"}
				bal := newBalancer(b, Config{Policy: p, Weights: map[string]int{"canary": 5}}, ins)
				keys := users(1024)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					k := 0
					for pb.Next() {
						var tried Tried
						if bal.Snapshot().Pick(keys[k&1023], &tried) < 0 {
							b.Fatal("no pick")
						}
						k++
					}
				})
			})
		}
	}
}

// BenchmarkPickDegraded measures picks while a third of the instances are down,
// which makes every policy skip.
func BenchmarkPickDegraded(b *testing.B) {
	for _, p := range policies {
		b.Run(string(p), func(b *testing.B) {
			ins, eps := instances(9)
			for i := 0; i < 9; i += 3 {
				eps[i].down.Store(true)
			}
			bal := newBalancer(b, Config{Policy: p}, ins)
			keys := users(1024)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				k := 0
				for pb.Next() {
					if bal.Snapshot().Pick(keys[k&1023], nil) < 0 {
						b.Fatal("no pick")
					}
					k++
				}
			})
		})
	}
}
