# frozen_string_literal: true

# Engines that sync from a real edge (`entitle serve` on 127.0.0.1): waiting for content,
# following a change, status, an edge that goes down, a warm start from the cache directory,
# close, and waits that release the GVL and can be interrupted.
require_relative "test_helper"

class SyncTest < Minitest::Test
  include EntitleTest

  POLL = 0.1 # seconds between manifest checks in these tests

  def test_connect_waits_for_content_and_follows_a_change
    with_edge do |edge|
      Entitle::Engine.open(edge.url, poll_interval: POLL) do |engine|
        assert engine.syncing?
        assert_same true, engine.wait_ready(20)
        assert_equal 50, engine.limit("cus_pro", "projects")
        status = engine.status
        assert_equal :ready, status.state
        assert status.syncing? && status.data?
        assert_equal [1, 1, nil], [status.version, status.edge_version, status.last_error]
        assert_operator status.syncs, :>=, 1
        assert_equal 1, status.snapshots_fetched
        assert_kind_of Time, status.last_success
        assert_kind_of Float, status.data_age
        assert status.lineage

        edge.publish(catalog(60))
        assert wait_until { engine.limit("cus_pro", "projects") == 60 }
        assert_equal 2, engine.version
        assert_equal 2, engine.check("cus_pro", "projects").version
        assert wait_until { engine.status.deltas_applied == 1 }
        assert_equal "#<Entitle::Engine syncing version=2>", engine.inspect
      end
    end
  end

  def test_long_poll_delivers_changes
    with_edge do |edge|
      Entitle::Engine.open(edge.url, long_poll: 10, poll_interval: 30) do |engine|
        assert engine.wait_ready(20)
        assert wait_until { engine.status.long_poll? }
        edge.publish(catalog(61))
        # With a 30 s poll interval only the long poll brings this within the wait.
        assert wait_until(15) { engine.limit("cus_pro", "projects") == 61 }
      end
    end
  end

  def test_edge_down_then_warm_start_from_the_cache
    with_edge do |edge, dir|
      cache = File.join(dir, "cache")
      Entitle::Engine.open(edge.url, cache_dir: cache, poll_interval: POLL) do |engine|
        assert engine.wait_ready(20)
        refute engine.status.warm_start?
        edge.stop # the edge goes down under a running engine
        assert wait_until { engine.status.failures >= 1 }
        status = engine.status
        assert_operator status.consecutive_failures, :>=, 1
        assert status.last_error
        assert_kind_of Time, status.last_error_at
        assert_equal 50, engine.limit("cus_pro", "projects") # still serving good data
      end
      refute_empty Dir.glob(File.join(cache, "**", "*")), "nothing was written to the cache directory"

      Entitle::Engine.open(edge.url, cache_dir: Pathname.new(cache), poll_interval: POLL) do |engine|
        assert_same true, engine.wait_ready(0) # served from the cache at once
        assert engine.status.warm_start?
        assert_equal 50, engine.limit("cus_pro", "projects")
        assert wait_until { engine.status.failures >= 1 } # the edge is gone
        assert_equal 50, engine.limit("cus_pro", "projects")
      end
    end
  end

  def test_max_artifact_bytes_refuses_a_larger_snapshot
    with_edge do |edge|
      Entitle::Engine.open(edge.url, poll_interval: POLL, max_backoff: 0.2, max_artifact_bytes: 16) do |engine|
        refute engine.wait_ready(1) # the only snapshot is larger than 16 bytes
        assert wait_until { engine.status.failures >= 1 }
        assert engine.status.last_error
      end
      Entitle::Engine.open(edge.url, poll_interval: POLL, max_artifact_bytes: 64 << 20) do |engine|
        assert engine.wait_ready(20)
      end
      assert_raises(TypeError) { Entitle::Engine.connect(edge.url, max_artifact_bytes: "1") }
      assert_raises(ArgumentError) { Entitle::Engine.connect(edge.url, max_artifact_bytes: 0) }
    end
  end

  def test_unreachable_edge_is_reported_not_raised
    Entitle::Engine.open("http://127.0.0.1:9", poll_interval: POLL, max_backoff: 0.2) do |engine|
      assert_same false, engine.wait_ready(0.3)
      assert wait_until { engine.status.failures >= 1 }
      status = engine.status
      assert_includes %i[starting failed], status.state
      refute status.data?
      assert_includes status.last_error, "127.0.0.1:9"
      assert_equal :feature_not_found, engine.check("cus_pro", "sso").reason
      refute engine.enabled?("cus_pro", "sso")
    end
  end

  def test_wait_ready_releases_the_gvl
    Entitle::Engine.open("http://127.0.0.1:9", poll_interval: POLL) do |engine|
      counter = 0
      spinner = Thread.new { loop { counter += 1 } }
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      assert_same false, engine.wait_ready(1)
      elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      spinner.kill.join
      assert_operator elapsed, :>=, 0.95
      # With the GVL held for the whole second the spinner would have been starved.
      assert_operator counter, :>, 100_000
    end
  end

  def test_close_wakes_a_waiting_thread
    engine = Entitle::Engine.connect("http://127.0.0.1:9", poll_interval: POLL)
    waiter = Thread.new { engine.wait_ready(60) }
    sleep 0.3
    engine.close
    assert waiter.join(30), "wait_ready did not return after close"
    assert_same false, waiter.value
    assert_raises(Entitle::ClosedError) { engine.wait_ready(0) }
  end

  def test_thread_raise_and_timeout_interrupt_a_wait
    Entitle::Engine.open("http://127.0.0.1:9", poll_interval: POLL) do |engine|
      waiter = Thread.new do
        engine.wait_ready
      rescue RuntimeError => e
        e.message
      end
      sleep 0.3
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      waiter.raise(RuntimeError, "stop waiting")
      assert_equal "stop waiting", waiter.value
      assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 2

      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      assert_raises(Timeout::Error) { Timeout.timeout(0.3) { engine.wait_ready(60) } }
      assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 2

      killed = Thread.new { engine.wait_ready }
      sleep 0.2
      killed.kill
      assert killed.join(2), "Thread#kill did not end a wait"
      # The engine is still usable (and closable) after interrupted waits.
      assert_same false, engine.wait_ready(0.05)
    end
  end

  def test_ctrl_c_interrupts_a_wait
    code = <<~RUBY
      engine = Entitle::Engine.connect("http://127.0.0.1:9")
      $stdout.puts "waiting"
      $stdout.flush
      begin
        engine.wait_ready
      rescue Interrupt
        puts "interrupted"
        exit 3
      end
    RUBY
    out_r, out_w = IO.pipe
    pid = Process.spawn(RbConfig.ruby, "-I", LIB, "-rentitle", "-e", code, out: out_w)
    out_w.close
    assert out_r.wait_readable(20)
    assert_equal "waiting\n", out_r.gets
    sleep 0.2
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    Process.kill("INT", pid)
    _, status = Timeout.timeout(20) { Process.wait2(pid) }
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 5
    assert_equal "interrupted\n", out_r.read
    assert_equal 3, status.exitstatus
  ensure
    out_r&.close
  end
end
