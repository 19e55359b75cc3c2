// A sarama consumer-group member for pykaf's peer tests: joins GROUP, consumes COUNT
// records of TOPIC, marks them, and exits after the offsets are committed.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/Shopify/sarama"
)

type handler struct {
	want int
	seen int
	done chan struct{}
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for msg := range c.Messages() {
		fmt.Printf("%d %d %s\n", msg.Partition, msg.Offset, msg.Value)
		s.MarkMessage(msg, "")
		h.seen++
		if h.seen == h.want {
			close(h.done)
			return nil
		}
	}
	return nil
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: groupprobe BOOTSTRAP TOPIC GROUP COUNT")
		os.Exit(2)
	}
	count, err := strconv.Atoi(os.Args[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	config := sarama.NewConfig()
	config.Version = sarama.V2_1_0_0
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	group, err := sarama.NewConsumerGroup([]string{os.Args[1]}, os.Args[3], config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "group:", err)
		os.Exit(1)
	}
	go func() {
		for err := range group.Errors() {
			fmt.Fprintln(os.Stderr, "group error:", err)
		}
	}()
	h := &handler{want: count, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if err := group.Consume(ctx, []string{os.Args[2]}, h); err != nil {
				fmt.Fprintln(os.Stderr, "consume:", err)
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	select {
	case <-h.done:
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "timed out")
		os.Exit(1)
	}
	time.Sleep(300 * time.Millisecond) // let the commit interval pass once more
	if err := group.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		os.Exit(1)
	}
}
