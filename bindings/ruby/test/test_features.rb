# frozen_string_literal: true

# Feature handles (Engine#feature) and batches (Feature#check_many, Engine#check_features): the
# same answers as the lookups by key, through the conformance suite and across updates.
require_relative "test_helper"
require_relative "test_conformance"

class FeaturesTest < Minitest::Test
  include EntitleTest

  def test_handles_answer_as_keys_through_the_conformance_suite
    cases = 0
    ConformanceTest.valid_files.each do |file|
      text = File.read(file, encoding: "UTF-8")
      engine = Entitle::Engine.from_catalog(ConformanceTest.raw_catalog(text))
      JSON.parse(text).fetch("cases").each do |kase|
        c, f, at = kase.fetch("customer"), kase.fetch("feature"), kase.fetch("at")
        name = "#{File.basename(file)}: #{kase["name"]}"
        handle = engine.feature(f)
        assert_equal engine.check(c, f, at: at), handle.check(c, at: at), name
        assert_equal engine.enabled?(c, f, at: at), handle.enabled?(c, at: at), name
        assert_equal engine.limit(c, f, at: at), handle.limit(c, at: Time.at(at)), name
        if kase.key?("usage")
          requested = kase.fetch("requested", 1)
          assert_equal kase.dig("expected", "allowed"),
                       handle.allows?(c, kase.fetch("usage"), requested: requested, at: at), name
        end
        assert_equal [engine.check(c, f, at: at)], handle.check_many([c], at: at), name
        assert_equal [engine.check(c, f, at: at)], engine.check_features(c, [handle], at: at), name
        cases += 1
      end
      engine.close
    end
    assert_operator cases, :>, 100
  end

  def test_batches
    engine = Entitle::Engine.from_catalog(catalog)
    projects = engine.feature("projects")
    assert projects.frozen?
    assert_equal "projects", projects.key
    assert_same engine, projects.engine
    customers = ["cus_pro", :cus_ent, "nobody", "cus_override", "cus_pro".encode("UTF-16LE")]
    many = projects.check_many(customers)
    assert_equal customers.map { |c| engine.check(c, "projects") }, many
    assert_equal [50, Float::INFINITY, 3, 7, 50], many.map(&:limit)
    assert_equal [], projects.check_many([])
    features = %w[sso projects seats nope].map { |k| engine.feature(k) }
    assert_equal %w[sso projects seats nope].map { |k| engine.check("cus_pro", k) },
                 engine.check_features("cus_pro", features)
    assert_equal :feature_not_found, engine.check_features("cus_pro", features).last.reason
    assert_equal [], engine.check_features("cus_pro", [])
    assert projects.allows?("cus_pro", 49)
    refute projects.allows?("cus_pro", 48, requested: 3)
    assert_equal :subscription, projects.check("cus_cancelling", at: AT).reason

    other = Entitle::Engine.from_catalog(catalog)
    assert_raises(ArgumentError) { engine.check_features("cus_pro", [other.feature("sso")]) }
    assert_raises(TypeError) { engine.check_features("cus_pro", ["sso"]) }
    assert_raises(TypeError) { engine.check_features("cus_pro", "sso") }
    assert_raises(TypeError) { projects.check_many("cus_pro") }
    assert_raises(TypeError) { projects.check_many(["cus_pro", 1]) }
    assert_raises(TypeError) { projects.enabled?(nil) }
    assert_raises(ArgumentError) { projects.allows?("cus_pro", -1) }
    assert_raises(NoMethodError) { Entitle::Feature.new }
    assert_raises(TypeError) { engine.feature(nil) }
    engine.close
    assert_raises(Entitle::ClosedError) { projects.enabled?("cus_pro") }
    assert_raises(Entitle::ClosedError) { projects.check_many(["cus_pro"]) }
    assert_raises(Entitle::ClosedError) { engine.feature("sso") }
    other.close
  end

  def test_handles_follow_updates
    Dir.mktmpdir do |dir|
      paths = snapshots(dir)
      engine = Entitle::Engine.from_file(paths[:v1])
      projects = engine.feature("projects")
      missing = engine.feature("not_yet")
      assert_equal 50, projects.limit("cus_pro")
      engine.apply_delta(File.binread(paths[:delta]))
      assert_equal 60, projects.limit("cus_pro")
      changed = catalog(70)
      changed["features"].unshift({"key" => "not_yet", "type" => "flag", "default" => true})
      src = File.join(dir, "v3.json")
      File.write(src, JSON.generate(changed))
      run_cli("build", src, "-o", File.join(dir, "v3.snap"), "--version", "3")
      engine.replace_file(File.join(dir, "v3.snap")) # another feature list: handles find their key again
      assert_equal 70, projects.limit("cus_pro")
      assert missing.enabled?("anyone")
      assert_equal [70, 70], projects.check_many(%w[cus_pro cus_pro]).map(&:limit)
      engine.close
    end
  end
end
