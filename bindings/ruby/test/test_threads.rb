# frozen_string_literal: true

# Threads reading while other threads replace snapshots and apply deltas: every answer belongs to
# one of the versions (never a mix), and nothing crashes.
require_relative "test_helper"

class ThreadsTest < Minitest::Test
  include EntitleTest

  def test_readers_while_snapshots_are_replaced_and_deltas_applied
    Dir.mktmpdir do |dir|
      paths = snapshots(dir)
      v1, v2, delta = File.binread(paths[:v1]), File.binread(paths[:v2]), File.binread(paths[:delta])
      engine = Entitle::Engine.from_snapshot(v1)
      stop = false
      seen = Queue.new
      readers = Array.new(4) do
        Thread.new do
          answers = Hash.new(0)
          until stop
            d = engine.check("cus_pro", "projects")
            # Version and limit come from the same snapshot: 1 → 50, 2 → 60.
            raise "mixed answer #{d.inspect}" unless [[1, 50], [2, 60]].include?([d.version, d.limit])

            limit = engine.limit("cus_pro", "projects")
            raise "limit #{limit}" unless [50, 60].include?(limit)
            raise "sso off" unless engine.enabled?("cus_pro", "sso")
            raise "allows?" unless engine.allows?("cus_pro", "projects", 49)

            answers[d.version] += 1
            Thread.pass if (answers[1] + answers[2]) % 64 == 0
          end
          seen << answers
        end
      end
      writers = [
        Thread.new { 300.times { |i| engine.replace(i.even? ? v1 : v2) } },
        Thread.new do
          300.times do
            engine.apply_delta(delta)
          rescue Entitle::DeltaError
            nil # the base was v2 at that moment: the content is kept
          end
        end
      ]
      writers.each(&:join)
      stop = true
      readers.each(&:join)
      totals = Array.new(readers.size) { seen.pop }.reduce({}) { |a, h| a.merge(h) { |_, x, y| x + y } }
      assert_operator totals.fetch(1, 0), :>, 0
      assert_operator totals.fetch(2, 0), :>, 0
      engine.close
    end
  end

  def test_close_while_other_threads_read
    20.times do
      engine = Entitle::Engine.from_catalog(catalog)
      errors = Queue.new
      readers = Array.new(3) do
        Thread.new do
          loop { engine.enabled?("cus_pro", "sso") }
        rescue Entitle::ClosedError => e
          errors << e
        end
      end
      sleep 0.01
      engine.close
      readers.each(&:join)
      assert_equal 3, errors.size
    end
  end
end
