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
      seen = {}
      lookups = 0
      readers = Array.new(4) do
        Thread.new do
          until stop
            d = engine.check("cus_pro", "projects")
            # Version and limit come from the same snapshot: 1 → 50, 2 → 60.
            raise "mixed answer #{d.inspect}" unless [[1, 50], [2, 60]].include?([d.version, d.limit])

            limit = engine.limit("cus_pro", "projects")
            raise "limit #{limit}" unless [50, 60].include?(limit)
            raise "sso off" unless engine.enabled?("cus_pro", "sso")
            raise "allows?" unless engine.allows?("cus_pro", "projects", 49)

            seen[d.version] = true
            lookups += 1
            Thread.pass if lookups % 64 == 0
          end
        end
      end
      updates = 0
      writers = [
        Thread.new do
          i = 0
          until stop
            engine.replace(i.even? ? v1 : v2)
            i += 1
            updates += 1
            Thread.pass
          end
        end,
        Thread.new do
          until stop
            begin
              engine.apply_delta(delta)
            rescue Entitle::DeltaError
              nil # the base was v2 at that moment: the content is kept
            end
            updates += 1
            Thread.pass
          end
        end
      ]
      # Bounded: the threads run until the readers have seen both versions among many updates.
      both = wait_until(30) { (seen[1] && seen[2] && updates >= 600 && lookups >= 10_000) || readers.none?(&:alive?) }
      stop = true
      (readers + writers).each(&:join) # a reader that saw a mixed answer raises here
      assert both, "readers saw versions #{seen.keys.sort} over #{updates} updates and #{lookups} lookups"
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
