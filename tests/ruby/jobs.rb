# Job classes for a real `sidekiq` process started by the interop tests (`sidekiq -r THIS`).
# Each appends one JSON line to the same ledger list as the Python test jobs.
require "json"
require "sidekiq"

Sidekiq.configure_server do |config|
  config.redis = { url: ENV.fetch("REDIS_URL") }
  config.average_scheduled_poll_interval = 1 # the retry poller runs within seconds in tests
end

class RubyRecordJob
  include Sidekiq::Worker

  def perform(*args)
    Sidekiq.redis { |c| c.rpush("test:performed", JSON.generate({jid: jid, args: args, ruby: true})) }
  end
end

class RubyGateJob
  include Sidekiq::Worker

  def perform(label)
    Sidekiq.redis do |c|
      c.rpush("test:performed", JSON.generate({jid: jid, args: [label], ruby: true, phase: "started"}))
      c.blpop("test:gate", timeout: 30)
    end
  end
end

class RubyFailJob
  include Sidekiq::Worker
  sidekiq_options retry: 3, backtrace: true

  def perform(message)
    raise ArgumentError, message
  end
end
