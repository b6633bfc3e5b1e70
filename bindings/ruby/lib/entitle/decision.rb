# frozen_string_literal: true

module Entitle
  # One evaluated decision (Entitle::Engine#check): frozen, comparable by value and shareable
  # between Ractors. Its readers are defined by the C extension:
  #
  # feature_type:: +:flag+, +:limit+, or +nil+ when the feature is not in the snapshot
  # enabled?::     a flag's value; for a limit, unlimited or above 0; false for unknown features
  # limit::        a limit's value (Integer, or Float::INFINITY when unlimited); nil otherwise
  # unlimited?::   whether the limit is unlimited
  # reason::       +:override+, +:subscription+, +:default+, +:customer_not_found+ or
  #                +:feature_not_found+
  # version::      the content version of the snapshot that answered
  # to_h::         all of the above (but unlimited?) as a Hash
  class Decision
    # Pattern matching: <tt>in {enabled: true, reason: :override}</tt>.
    def deconstruct_keys(_keys)
      to_h
    end

    def inspect
      "#<Entitle::Decision #{to_h.map { |k, v| "#{k}=#{v.inspect}" }.join(" ")}>"
    end
  end
end
