# frozen_string_literal: true

# Engine events (entitle_engine_next_event): next_event, on_change for changes from the edge and
# from replace / apply_delta, sync failures, the listener thread ending at close and restarting in
# a forked child.
require_relative "test_helper"

class EventsTest < Minitest::Test
  include EntitleTest

  POLL = 0.1

  def test_next_event_and_on_change_for_local_updates
    Dir.mktmpdir do |dir|
      paths = snapshots(dir)
      engine = Entitle::Engine.from_file(paths[:v1])
      assert_nil engine.next_event(timeout: 0)
      seen = Queue.new
      engine.on_change { |event| seen << event }
      engine.on_change { raise "a failing listener does not stop the others" }
      assert_output(nil, /on_change listener raised RuntimeError/) do
        engine.apply_delta(File.binread(paths[:delta]))
        event = Timeout.timeout(10) { seen.pop }
        assert event.frozen?
        assert_equal [:version_changed, 1, 2], [event.kind, event.old_version, event.new_version]
        assert_kind_of Time, event.at
        assert_kind_of String, event.message
        engine.replace(File.binread(paths[:v1]))
        assert_equal [2, 1], Timeout.timeout(10) { seen.pop }.then { |e| [e.old_version, e.new_version] }
        sleep 0.1 # let the warning of the second event be written inside assert_output
      end
      first = engine.next_event(after: 0, timeout: 0)
      assert_equal 1, first.seq
      # A negative sequence number was taken as 2**64 - 1: no event is after it, so the reader
      # waited for ever.
      assert_raises(ArgumentError) { engine.next_event(after: -1, timeout: 0) }
      assert_equal 2, engine.next_event(after: first.seq, timeout: 1).seq
      listener = Thread.list.find { |t| t.name == "entitle-on-change" }
      assert listener
      engine.close
      assert listener.join(10), "the on_change thread did not end at close"
      assert_raises(Entitle::ClosedError) { engine.next_event(timeout: 0) }
    end
  end

  def test_sync_events_from_the_edge
    with_edge do |edge|
      Entitle::Engine.open(edge.url, poll_interval: POLL, max_backoff: 0.2) do |engine|
        assert engine.wait_ready(20)
        seen = Queue.new
        engine.on_change { |event| seen << event }
        edge.publish(catalog(60))
        event = Timeout.timeout(20) { seen.pop }
        assert_equal [:version_changed, 1, 2], [event.kind, event.old_version, event.new_version]
        edge.stop
        seq = event.seq
        failed = wait_until(20) do
          found = engine.next_event(after: seq, timeout: 0.5)
          seq = found.seq if found
          found&.kind == :sync_failed && found
        end
        assert failed, "no sync_failed event"
        refute_empty failed.message
      end
    end
  end

  def test_a_waiting_reader_is_woken_by_close_and_interruptible
    engine = Entitle::Engine.connect("http://127.0.0.1:9", poll_interval: POLL)
    reader = Thread.new do
      seq = 0
      loop { seq = (engine.next_event(after: seq) || raise("timed out")).seq }
    rescue Entitle::ClosedError => e
      e
    end
    assert_raises(Timeout::Error) { Timeout.timeout(0.3) { engine.next_event(after: 10**9) } }
    sleep 0.2
    engine.close
    assert reader.join(10), "next_event did not return after close"
    assert_kind_of Entitle::ClosedError, reader.value
  end

  # Entitle.after_fork where the listener runs (the parent, or a child the hook already restarted
  # it in, as a server's worker-boot hook would) starts no second listener: each block still runs
  # once per change (it ran twice).
  def test_after_fork_again_keeps_one_listener
    Dir.mktmpdir do |dir|
      paths = snapshots(dir)
      engine = Entitle::Engine.from_file(paths[:v1])
      seen = Queue.new
      engine.on_change { |event| seen << event.new_version }
      2.times { Entitle.after_fork }
      engine.apply_delta(File.binread(paths[:delta]))
      assert_equal 2, Timeout.timeout(10) { seen.pop }
      sleep 0.3 # a second listener would have delivered the event again by now
      assert_equal 0, seen.size
      engine.close
    end
  end

  def test_the_listener_restarts_in_a_forked_child
    Dir.mktmpdir do |dir|
      paths = snapshots(dir)
      engine = Entitle::Engine.from_file(paths[:v1])
      engine.on_change { |event| $stdout.puts "change #{event.new_version}" }
      reader, writer = IO.pipe
      pid = fork do
        reader.close
        $stdout.reopen(writer)
        $stdout.sync = true
        engine.apply_delta(File.binread(paths[:delta]))
        sleep 0.5
        exit!(0)
      end
      writer.close
      _, status = Timeout.timeout(30) { Process.wait2(pid) }
      assert status.success?
      assert_equal "change 2\n", reader.read
      reader.close
      engine.close
    end
  end
end
