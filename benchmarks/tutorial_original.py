"""The tutorial's network as the tutorial writes it: plain NumPy, column layout, float64.

A transcription kept as the user's "before": the benchmarks time it as a peer, and the tests
hold ``netcore.tutorial`` to it (same printed lines, same parameters within 1e-12).
X is ``(784, m)``, Y one-hot ``(10, m)``; 784 -> 16 tanh -> 16 tanh -> 10 softmax.
"""

import numpy as np


def initialize_parameters(layer_dims):
    np.random.seed(2)
    parameters = {}
    for l in range(1, len(layer_dims)):
        parameters["W" + str(l)] = np.random.randn(layer_dims[l], layer_dims[l - 1]) * 0.1
        parameters["b" + str(l)] = np.zeros((layer_dims[l], 1))
    return parameters


def tanh(Z):
    return np.tanh(Z)


def softmax(Z):
    expZ = np.exp(Z - np.max(Z, axis=0, keepdims=True))
    return expZ / np.sum(expZ, axis=0, keepdims=True)


def forward_propagation(X, parameters):
    Z1 = np.dot(parameters["W1"], X) + parameters["b1"]
    A1 = tanh(Z1)
    Z2 = np.dot(parameters["W2"], A1) + parameters["b2"]
    A2 = tanh(Z2)
    Z3 = np.dot(parameters["W3"], A2) + parameters["b3"]
    A3 = softmax(Z3)
    cache = {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2, "Z3": Z3, "A3": A3}
    return A3, cache


def backward_propagation(X, Y, parameters, cache):
    m = X.shape[1]
    A1, A2, A3 = cache["A1"], cache["A2"], cache["A3"]

    dZ3 = A3 - Y
    dW3 = (1 / m) * np.dot(dZ3, A2.T)
    db3 = (1 / m) * np.sum(dZ3, axis=1, keepdims=True)

    dZ2 = np.dot(parameters["W3"].T, dZ3) * (1 - np.power(A2, 2))
    dW2 = (1 / m) * np.dot(dZ2, A1.T)
    db2 = (1 / m) * np.sum(dZ2, axis=1, keepdims=True)

    dZ1 = np.dot(parameters["W2"].T, dZ2) * (1 - np.power(A1, 2))
    dW1 = (1 / m) * np.dot(dZ1, X.T)
    db1 = (1 / m) * np.sum(dZ1, axis=1, keepdims=True)

    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2, "dW3": dW3, "db3": db3}


def update_parameters(parameters, grads, learning_rate):
    for l in range(1, 4):
        parameters["W" + str(l)] = parameters["W" + str(l)] - learning_rate * grads["dW" + str(l)]
        parameters["b" + str(l)] = parameters["b" + str(l)] - learning_rate * grads["db" + str(l)]
    return parameters


def one_hot(Y, n_classes=10):
    return np.eye(n_classes)[Y].T


def model(X, Y, layer_dims, learning_rate=1.0, num_iterations=100, print_cost=True):
    parameters = initialize_parameters(layer_dims)
    costs = []
    for i in range(num_iterations):
        if i == 75:
            learning_rate = 0.1
        A3, cache = forward_propagation(X, parameters)
        cost = -np.sum(Y * np.log(A3)) / X.shape[1]
        grads = backward_propagation(X, Y, parameters, cache)
        parameters = update_parameters(parameters, grads, learning_rate)
        costs.append(cost)
        if print_cost and i % 10 == 0:
            accuracy = np.mean(np.argmax(A3, axis=0) == np.argmax(Y, axis=0))
            print("Cost after iteration %i: %f, accuracy: %.4f" % (i, cost, accuracy))
    return parameters, costs
