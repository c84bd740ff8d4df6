"""ROS 2 layer of SMPLify-3D (node, conversions, bag tools). Imports rclpy; the core never does."""
